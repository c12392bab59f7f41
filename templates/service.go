package templates

import (
	"strings"

	"github.com/dave/jennifer/jen"
	"google.golang.org/protobuf/compiler/protogen"
	"google.golang.org/protobuf/types/descriptorpb"
)

// deprecationComment is the paragraph appended to the doc comment of every
// identifier generated for a deprecated service or method.
const deprecationComment = "// Deprecated: Do not use."

// genService adds everything generated for one service to f.
func genService(f *jen.File, file *protogen.File, sn *ServiceNames) {
	genConstants(f, sn)
	genClient(f, sn)
	genServer(f, sn)
	genServiceDesc(f, file, sn)
}

func serviceDeprecated(sn *ServiceNames) bool {
	return sn.Service.Desc.Options().(*descriptorpb.ServiceOptions).GetDeprecated()
}

func methodDeprecated(m *MethodNames) bool {
	return m.Method.Desc.Options().(*descriptorpb.MethodOptions).GetDeprecated()
}

func genConstants(f *jen.File, sn *ServiceNames) {
	svc := sn.Service
	full := string(svc.Desc.FullName())

	f.Line()
	f.Add(doc(sn.ServiceNameConst + " is the fully-qualified name of the " + full + " service."))
	f.Const().Id(sn.ServiceNameConst).Op("=").Lit(full)

	if len(sn.Methods) == 0 {
		return
	}
	f.Line()
	f.Comment("Full method names of the " + full + " service, as passed to storks.Invoker.")
	f.Const().DefsFunc(func(g *jen.Group) {
		for _, m := range sn.Methods {
			name := "/" + full + "/" + string(m.Method.Desc.Name())
			g.Id(m.FullMethodNameConst).Op("=").Lit(name)
		}
	})
}

// clientSignature is the method as declared in the client interface and
// implemented by the client struct. A unary method takes the request and
// returns the response; a server-streaming one takes the request and
// returns the stream of responses; client- and bidi-streaming ones return
// the stream the requests are sent on.
func clientSignature(m *MethodNames) *jen.Statement {
	params := []jen.Code{jen.Id("ctx").Qual(contextPackage, "Context")}
	if !m.Method.Desc.IsStreamingClient() {
		params = append(params, jen.Id("in").Op("*").Add(ident(m.Method.Input.GoIdent)))
	}
	params = append(params, jen.Id("opts").Op("...").Qual(runtimePackage, "CallOption"))
	result := jen.Op("*").Add(ident(m.Method.Output.GoIdent))
	if isStreaming(m.Method) {
		result = clientStreamType(m)
	}
	return jen.Id(m.GoName).Params(params...).Params(result, jen.Error())
}

// serverSignature is the method as declared in the server interface and
// implemented by Unimplemented*Server: as grpc-go's, a server-streaming
// method gets the request and the stream to send responses on, client- and
// bidi-streaming ones the stream only.
func serverSignature(m *MethodNames) *jen.Statement {
	in := jen.Op("*").Add(ident(m.Method.Input.GoIdent))
	if !isStreaming(m.Method) {
		return jen.Id(m.GoName).Params(jen.Qual(contextPackage, "Context"), in).
			Params(jen.Op("*").Add(ident(m.Method.Output.GoIdent)), jen.Error())
	}
	var params []jen.Code
	if !m.Method.Desc.IsStreamingClient() {
		params = append(params, in)
	}
	params = append(params, serverStreamType(m))
	return jen.Id(m.GoName).Params(params...).Error()
}

// streamKind is the prefix of the runtime's generic stream types for the
// streaming method m: "ServerStreaming", "ClientStreaming" or
// "BidiStreaming".
func streamKind(m *MethodNames) string {
	switch d := m.Method.Desc; {
	case d.IsStreamingClient() && d.IsStreamingServer():
		return "BidiStreaming"
	case d.IsStreamingClient():
		return "ClientStreaming"
	}
	return "ServerStreaming"
}

// streamTypeArgs are the type arguments of the runtime's stream types for
// m: the response for a server-streaming method, whose client sends one
// request, and else the request and the response.
func streamTypeArgs(m *MethodNames) []jen.Code {
	out := ident(m.Method.Output.GoIdent)
	if !m.Method.Desc.IsStreamingClient() {
		return []jen.Code{out}
	}
	return []jen.Code{ident(m.Method.Input.GoIdent), out}
}

// clientStreamType is the stream a streaming client method returns:
// storks.ServerStreamingClient[Res], storks.ClientStreamingClient[Req, Res]
// or storks.BidiStreamingClient[Req, Res].
func clientStreamType(m *MethodNames) *jen.Statement {
	return jen.Qual(runtimePackage, streamKind(m)+"Client").Types(streamTypeArgs(m)...)
}

// serverStreamType is the stream a streaming server method is given:
// storks.ServerStreamingServer[Res], storks.ClientStreamingServer[Req, Res]
// or storks.BidiStreamingServer[Req, Res].
func serverStreamType(m *MethodNames) *jen.Statement {
	return jen.Qual(runtimePackage, streamKind(m)+"Server").Types(streamTypeArgs(m)...)
}

// genericStream is the runtime's GenericClientStream or GenericServerStream
// (side "Client" or "Server") for m, which wraps the untyped stream.
func genericStream(m *MethodNames, side string) *jen.Statement {
	return jen.Qual(runtimePackage, "Generic"+side+"Stream").Types(
		ident(m.Method.Input.GoIdent), ident(m.Method.Output.GoIdent),
	)
}

// streamIndexes returns the index of each streaming method of sn in its
// ServiceDesc's Streams, which lists them in declaration order.
func streamIndexes(sn *ServiceNames) map[*MethodNames]int {
	idx := make(map[*MethodNames]int)
	for _, m := range sn.Methods {
		if isStreaming(m.Method) {
			idx[m] = len(idx)
		}
	}
	return idx
}

// interfaceMethods adds the methods of sn to an interface, each declared by
// declare, with its proto comments and deprecation.
func interfaceMethods(g *jen.Group, sn *ServiceNames, declare func(*MethodNames) *jen.Statement) {
	for _, m := range sn.Methods {
		g.Add(doc(comments(m.Method.Comments.Leading), deprecatedIf(methodDeprecated(m))))
		g.Add(declare(m))
	}
}

func genClient(f *jen.File, sn *ServiceNames) {
	svc := sn.Service
	deprecated := serviceDeprecated(sn)
	full := string(svc.Desc.FullName())

	// Client interface.
	f.Line()
	f.Add(doc(
		sn.Client+" is the client API for the "+full+" service.",
		comments(svc.Comments.Leading),
		deprecatedIf(deprecated),
	))
	f.Type().Id(sn.Client).InterfaceFunc(func(g *jen.Group) {
		interfaceMethods(g, sn, clientSignature)
	})

	// Client implementation.
	f.Line()
	f.Type().Id(sn.ClientImpl).Struct(jen.Id("inv").Qual(runtimePackage, "Invoker"))

	f.Line()
	f.Add(doc(
		sn.NewClient+" returns an implementation of "+sn.Client+" that makes every\n"+
			"// call through inv, usually a *storks.Reference to the service. It binds inv\n"+
			"// to "+sn.Desc+" (storks.BindService), so that the reference's fail\n"+
			"// mode knows which methods are idempotent.",
		deprecatedIf(deprecated),
	))
	f.Func().Id(sn.NewClient).Params(jen.Id("inv").Qual(runtimePackage, "Invoker")).Id(sn.Client).Block(
		jen.Return(jen.Op("&").Id(sn.ClientImpl).Values(jen.Id("inv").Op(":").Qual(runtimePackage, "BindService").Call(
			jen.Id("inv"), jen.Op("&").Id(sn.Desc),
		))),
	)

	streams := streamIndexes(sn)
	for _, m := range sn.Methods {
		f.Line()
		f.Add(doc(deprecatedIf(methodDeprecated(m))))
		recv := jen.Params(jen.Id("c").Op("*").Id(sn.ClientImpl))
		if !isStreaming(m.Method) {
			f.Func().Add(recv).Add(clientSignature(m)).Block(unaryClientBody(m)...)
			continue
		}
		f.Func().Add(recv).Add(clientSignature(m)).Block(streamClientBody(sn, m, streams[m])...)
		if m.ClientAlias != "" {
			genStreamAlias(f, m, m.ClientAlias, sn.Client+"."+m.GoName+" returns", clientStreamType(m))
		}
	}
}

// unaryClientBody is the body of a unary client method. The reply is
// allocated here and filled by Invoke (grpc-go's shape): nothing an
// interceptor returns can make it the wrong type.
func unaryClientBody(m *MethodNames) []jen.Code {
	return []jen.Code{
		jen.Id("out").Op(":=").New(ident(m.Method.Output.GoIdent)),
		jen.If(
			jen.Err().Op(":=").Id("c").Dot("inv").Dot("Invoke").Call(
				jen.Id("ctx"), jen.Id(m.FullMethodNameConst), jen.Id("in"), jen.Id("out"), jen.Id("opts").Op("..."),
			),
			jen.Err().Op("!=").Nil(),
		).Block(jen.Return(jen.Nil(), jen.Err())),
		jen.Return(jen.Id("out"), jen.Nil()),
	}
}

// streamClientBody is the body of a streaming client method, the index-th
// of its service's Streams: it opens the stream and wraps it in the typed
// GenericClientStream. A server-streaming method also sends the request
// and half-closes the stream, as grpc-go's does, but for one case: if
// SendMsg returns io.EOF, the provider has ended the stream already, and
// the method returns the stream, whose Recv returns how it ended, rather
// than io.EOF, which callers would take for a stream that ended well.
func streamClientBody(sn *ServiceNames, m *MethodNames, index int) []jen.Code {
	body := []jen.Code{
		jen.List(jen.Id("stream"), jen.Err()).Op(":=").Id("c").Dot("inv").Dot("NewStream").Call(
			jen.Id("ctx"),
			jen.Op("&").Id(sn.Desc).Dot("Streams").Index(jen.Lit(index)),
			jen.Id(m.FullMethodNameConst),
			jen.Id("opts").Op("..."),
		),
		jen.If(jen.Err().Op("!=").Nil()).Block(jen.Return(jen.Nil(), jen.Err())),
		jen.Id("x").Op(":=").Op("&").Add(genericStream(m, "Client")).Values(jen.Id("ClientStream").Op(":").Id("stream")),
	}
	if !m.Method.Desc.IsStreamingClient() {
		body = append(body,
			jen.If(
				jen.Err().Op(":=").Id("x").Dot("ClientStream").Dot("SendMsg").Call(jen.Id("in")),
				jen.Err().Op("==").Qual(ioPackage, "EOF"),
			).Block(
				jen.Comment("The stream has ended already: Recv returns its status."),
				jen.Return(jen.Id("x"), jen.Nil()),
			).Else().If(jen.Err().Op("!=").Nil()).Block(
				jen.Return(jen.Nil(), jen.Err()),
			),
			jen.If(
				jen.Err().Op(":=").Id("x").Dot("ClientStream").Dot("CloseSend").Call(),
				jen.Err().Op("!=").Nil(),
			).Block(jen.Return(jen.Nil(), jen.Err())),
		)
	}
	return append(body, jen.Return(jen.Id("x"), jen.Nil()))
}

func genServer(f *jen.File, sn *ServiceNames) {
	svc := sn.Service
	deprecated := serviceDeprecated(sn)
	full := string(svc.Desc.FullName())

	// Server interface.
	f.Line()
	f.Add(doc(
		sn.Server+" is the server API for the "+full+" service.\n"+
			"// All implementations must embed "+sn.Unimplemented+"\n"+
			"// for forward compatibility.",
		comments(svc.Comments.Leading),
		deprecatedIf(deprecated),
	))
	f.Type().Id(sn.Server).InterfaceFunc(func(g *jen.Group) {
		interfaceMethods(g, sn, serverSignature)
		g.Id(sn.MustEmbed).Params()
	})

	// Unimplemented server.
	f.Line()
	f.Add(doc(
		sn.Unimplemented+" must be embedded to have forward compatible implementations.",
		"NOTE: this should be embedded by value instead of pointer to avoid a nil\n"+
			"// pointer dereference when methods are called.",
	))
	f.Type().Id(sn.Unimplemented).Struct()
	f.Line()
	for _, m := range sn.Methods {
		results := []jen.Code{jen.Qual(runtimePackage, "Errorf").Call(
			jen.Qual(runtimePackage, "CodeUnimplemented"),
			jen.Lit("method "+string(m.Method.Desc.Name())+" not implemented"),
		)}
		if !isStreaming(m.Method) {
			results = append([]jen.Code{jen.Nil()}, results...)
		}
		f.Func().Params(jen.Id(sn.Unimplemented)).Add(serverSignature(m)).Block(jen.Return(results...))
	}
	f.Func().Params(jen.Id(sn.Unimplemented)).Id(sn.MustEmbed).Params().Block()
	f.Func().Params(jen.Id(sn.Unimplemented)).Id(TestEmbeddedByValue).Params().Block()

	// Unsafe server.
	f.Line()
	f.Add(doc(
		sn.Unsafe + " may be embedded to opt out of forward compatibility for this service.\n" +
			"// Use of this interface is not recommended, as added methods to " + sn.Server + " will\n" +
			"// result in compilation errors.",
	))
	f.Type().Id(sn.Unsafe).Interface(jen.Id(sn.MustEmbed).Params())

	// Registration.
	f.Line()
	f.Add(doc(
		sn.Register+" exports srv on s as the implementation of the\n"+
			"// "+full+" service.",
		deprecatedIf(deprecated),
	))
	f.Func().Id(sn.Register).Params(
		jen.Id("s").Qual(runtimePackage, "ServiceRegistrar"),
		jen.Id("srv").Id(sn.Server),
		jen.Id("opts").Op("...").Qual(runtimePackage, "ExportOption"),
	).Params(jen.Op("*").Qual(runtimePackage, "Exporter"), jen.Error()).Block(
		jen.Comment("If the following call panics, it indicates "+sn.Unimplemented+" was"),
		jen.Comment("embedded by pointer and is nil. This would cause panics if an"),
		jen.Comment("unimplemented method were ever invoked, so it is tested at export"),
		jen.Comment("time rather than when a call arrives."),
		jen.If(
			jen.List(jen.Id("t"), jen.Id("ok")).Op(":=").Id("srv").Assert(inlineInterface(jen.Id(TestEmbeddedByValue).Params())),
			jen.Id("ok"),
		).Block(jen.Id("t").Dot(TestEmbeddedByValue).Call()),
		jen.Return(jen.Id("s").Dot("Export").Call(jen.Op("&").Id(sn.Desc), jen.Id("srv"), jen.Id("opts").Op("..."))),
	)

	// The stream aliases of the server side.
	for _, m := range sn.Methods {
		if m.ServerAlias == "" {
			continue
		}
		genStreamAlias(f, m, m.ServerAlias, sn.Server+"."+m.GoName+" is given", serverStreamType(m))
	}
}

func genServiceDesc(f *jen.File, file *protogen.File, sn *ServiceNames) {
	svc := sn.Service

	var methods, streams []jen.Code
	for _, m := range sn.Methods {
		if isStreaming(m.Method) {
			streams = append(streams, composite(streamDescFields(sn, m)...).Op(","))
			continue
		}
		in := ident(m.Method.Input.GoIdent)
		fields := []jen.Code{
			field("Name", jen.Lit(string(m.Method.Desc.Name()))),
			field("NewRequest", jen.Func().Params().Any().Add(inlineBlock(jen.Return(jen.New(in))))),
			field("Handler", jen.Func().Params(
				jen.Id("srv").Any(),
				jen.Id("ctx").Qual(contextPackage, "Context"),
				jen.Id("req").Any(),
			).Params(jen.Any(), jen.Error()).Block(
				jen.Return(jen.Id("srv").Assert(jen.Id(sn.Server)).Dot(m.GoName).Call(
					jen.Id("ctx"), jen.Id("req").Assert(jen.Op("*").Add(in)),
				)),
			)),
		}
		if idempotent(m.Method) {
			fields = append(fields, field("Idempotent", jen.True()))
		}
		methods = append(methods, composite(fields...).Op(","))
	}

	f.Line()
	f.Add(doc(
		sn.Desc + " is the storks.ServiceDesc for the " + string(svc.Desc.FullName()) + " service.\n" +
			"// It's only intended for direct use with " + sn.Register + " and " + sn.NewClient + ",\n" +
			"// and not to be introspected or modified (even as a copy).",
	))
	f.Var().Id(sn.Desc).Op("=").Qual(runtimePackage, "ServiceDesc").Add(composite(
		field("ServiceName", jen.Id(sn.ServiceNameConst)),
		field("HandlerType", jen.Parens(jen.Op("*").Id(sn.Server)).Call(jen.Nil())),
		field("Methods", jen.Index().Qual(runtimePackage, "MethodDesc").Add(composite(methods...))),
		field("Streams", jen.Index().Qual(runtimePackage, "StreamDesc").Add(composite(streams...))),
		field("Metadata", jen.Lit(file.Desc.Path())),
	))
}

// streamDescFields are the fields of the storks.StreamDesc of the streaming
// method m. Its handler wraps the stream in the typed GenericServerStream;
// for a server-streaming method it first receives the one request, as
// grpc-go's does.
func streamDescFields(sn *ServiceNames, m *MethodNames) []jen.Code {
	stream := jen.Op("&").Add(genericStream(m, "Server")).Values(jen.Id("ServerStream").Op(":").Id("stream"))
	call := jen.Id("srv").Assert(jen.Id(sn.Server)).Dot(m.GoName)
	var body []jen.Code
	if m.Method.Desc.IsStreamingClient() {
		body = []jen.Code{jen.Return(call.Call(stream))}
	} else {
		body = []jen.Code{
			jen.Id("m").Op(":=").New(ident(m.Method.Input.GoIdent)),
			jen.If(
				jen.Err().Op(":=").Id("stream").Dot("RecvMsg").Call(jen.Id("m")),
				jen.Err().Op("!=").Nil(),
			).Block(jen.Return(jen.Err())),
			jen.Return(call.Call(jen.Id("m"), stream)),
		}
	}
	fields := []jen.Code{
		field("StreamName", jen.Lit(string(m.Method.Desc.Name()))),
		field("Handler", jen.Func().Params(
			jen.Id("srv").Any(),
			jen.Id("stream").Qual(runtimePackage, "ServerStream"),
		).Error().Block(body...)),
	}
	if m.Method.Desc.IsStreamingServer() {
		fields = append(fields, field("ServerStreams", jen.True()))
	}
	if m.Method.Desc.IsStreamingClient() {
		fields = append(fields, field("ClientStreams", jen.True()))
	}
	return fields
}

// idempotent reports whether a method may be retried: its
// idempotency_level is IDEMPOTENT or NO_SIDE_EFFECTS.
func idempotent(m *protogen.Method) bool {
	switch m.Desc.Options().(*descriptorpb.MethodOptions).GetIdempotencyLevel() {
	case descriptorpb.MethodOptions_IDEMPOTENT, descriptorpb.MethodOptions_NO_SIDE_EFFECTS:
		return true
	}
	return false
}

// ident refers to a Go identifier, qualified when it is in another package.
func ident(id protogen.GoIdent) *jen.Statement {
	return jen.Qual(string(id.GoImportPath), id.GoName)
}

// composite renders a composite literal body, one item per line; every item
// must end in its own comma (see field).
func composite(items ...jen.Code) *jen.Statement {
	return jen.Custom(jen.Options{Open: "{", Close: "}", Multi: true}, items...)
}

// inlineBlock renders a one-statement block on one line: "{ stmt }".
func inlineBlock(stmt jen.Code) *jen.Statement {
	return jen.Custom(jen.Options{Open: "{ ", Close: " }"}, stmt)
}

// inlineInterface renders a one-method interface type on one line:
// "interface{ m() }".
func inlineInterface(method jen.Code) *jen.Statement {
	return jen.Custom(jen.Options{Open: "interface{ ", Close: " }"}, method)
}

// field renders "key: value," for composite.
func field(key string, value jen.Code) jen.Code {
	return jen.Id(key).Op(":").Add(value).Op(",")
}

// doc builds a doc comment from paragraphs, each of them either empty
// (skipped) or lines already starting with "//" except for the first,
// which doc prefixes with "// " unless it starts with "//" already. It
// returns jen.Null() when every paragraph is empty.
func doc(paragraphs ...string) jen.Code {
	var parts []string
	for _, p := range paragraphs {
		p = strings.TrimRight(p, "\n")
		if p == "" {
			continue
		}
		if !strings.HasPrefix(p, "//") {
			p = "// " + p
		}
		parts = append(parts, p)
	}
	if len(parts) == 0 {
		return jen.Null()
	}
	return jen.Comment(strings.Join(parts, "\n//\n"))
}

// comments renders proto comments as Go comment lines.
func comments(c protogen.Comments) string {
	return c.String()
}

func deprecatedIf(b bool) string {
	if b {
		return deprecationComment
	}
	return ""
}

// genStreamAlias declares alias, protoc-gen-go-grpc's name for the stream
// type typ of m, which the stream is described by what ("EchoClient.Chat
// returns").
func genStreamAlias(f *jen.File, m *MethodNames, alias, what string, typ jen.Code) {
	f.Line()
	f.Add(doc(
		alias+" is the type of the stream "+what+", by the\n"+
			"// name protoc-gen-go-grpc gives it: an alias for code written for grpc-go.",
		deprecatedIf(methodDeprecated(m)),
	))
	f.Type().Id(alias).Op("=").Add(typ)
}
