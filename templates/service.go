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

	generated := sn.Generated()
	if len(generated) == 0 {
		return
	}
	f.Line()
	f.Comment("Full method names of the " + full + " service, as passed to storks.Invoker.")
	f.Const().DefsFunc(func(g *jen.Group) {
		for _, m := range generated {
			name := "/" + full + "/" + string(m.Method.Desc.Name())
			g.Id(m.FullMethodNameConst).Op("=").Lit(name)
		}
	})
}

// clientSignature is the method as declared in the client interface and
// implemented by the client struct.
func clientSignature(m *MethodNames) *jen.Statement {
	return jen.Id(m.GoName).Params(
		jen.Id("ctx").Qual(contextPackage, "Context"),
		jen.Id("in").Op("*").Add(ident(m.Method.Input.GoIdent)),
		jen.Id("opts").Op("...").Qual(runtimePackage, "CallOption"),
	).Params(jen.Op("*").Add(ident(m.Method.Output.GoIdent)), jen.Error())
}

// serverSignature is the method as declared in the server interface and
// implemented by Unimplemented*Server.
func serverSignature(m *MethodNames) *jen.Statement {
	return jen.Id(m.GoName).Params(
		jen.Qual(contextPackage, "Context"),
		jen.Op("*").Add(ident(m.Method.Input.GoIdent)),
	).Params(jen.Op("*").Add(ident(m.Method.Output.GoIdent)), jen.Error())
}

// skippedNote is the comment left, in each interface, where a method that
// is not generated would be.
func skippedNote(m *MethodNames) jen.Code {
	return jen.Comment("// Method " + string(m.Method.Desc.Name()) + " " + m.Unsupported +
		", which this version of " + PluginName + " does not generate.")
}

// interfaceMethods adds the methods of sn to an interface, each declared by
// declare, with notes in place of the methods not generated. Blank lines
// set runs of notes apart from methods, whose doc comments they would
// otherwise become or look like. It reports whether the last item added is a
// note.
func interfaceMethods(g *jen.Group, sn *ServiceNames, declare func(*MethodNames) *jen.Statement) (endsInNote bool) {
	const none, method, note = 0, 1, 2
	prev := none
	for _, m := range sn.Methods {
		if m.Unsupported != "" {
			if prev == method {
				g.Empty()
			}
			g.Add(skippedNote(m))
			prev = note
			continue
		}
		if prev == note {
			g.Empty()
		}
		g.Add(doc(comments(m.Method.Comments.Leading), deprecatedIf(methodDeprecated(m))))
		g.Add(declare(m))
		prev = method
	}
	return prev == note
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

	for _, m := range sn.Generated() {
		out := ident(m.Method.Output.GoIdent)
		f.Line()
		f.Add(doc(deprecatedIf(methodDeprecated(m))))
		// The reply is allocated here and filled by Invoke (grpc-go's
		// shape): nothing an interceptor returns can make it the wrong type.
		f.Func().Params(jen.Id("c").Op("*").Id(sn.ClientImpl)).Add(clientSignature(m)).Block(
			jen.Id("out").Op(":=").New(out),
			jen.If(
				jen.Err().Op(":=").Id("c").Dot("inv").Dot("Invoke").Call(
					jen.Id("ctx"), jen.Id(m.FullMethodNameConst), jen.Id("in"), jen.Id("out"), jen.Id("opts").Op("..."),
				),
				jen.Err().Op("!=").Nil(),
			).Block(jen.Return(jen.Nil(), jen.Err())),
			jen.Return(jen.Id("out"), jen.Nil()),
		)
	}
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
		if interfaceMethods(g, sn, serverSignature) {
			g.Empty()
		}
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
	for _, m := range sn.Generated() {
		f.Func().Params(jen.Id(sn.Unimplemented)).Add(serverSignature(m)).Block(
			jen.Return(jen.Nil(), jen.Qual(runtimePackage, "Errorf").Call(
				jen.Qual(runtimePackage, "CodeUnimplemented"),
				jen.Lit("method "+string(m.Method.Desc.Name())+" not implemented"),
			)),
		)
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
}

func genServiceDesc(f *jen.File, file *protogen.File, sn *ServiceNames) {
	svc := sn.Service

	var methods []jen.Code
	for _, m := range sn.Generated() {
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
		field("Metadata", jen.Lit(file.Desc.Path())),
	))
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
