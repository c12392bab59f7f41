package main

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path"
	"slices"
	"strings"
	"testing"
)

// declarations returns the package-level identifiers declared in a Go file
// (init functions excluded),
// and for each interface type the names of its methods (as "Type.Method").
func declarations(t *testing.T, name, src string) (decls, methods []string) {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), name, src, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range f.Decls {
		switch d := d.(type) {
		case *ast.FuncDecl:
			if d.Recv == nil && d.Name.Name != "init" {
				decls = append(decls, d.Name.Name)
			}
		case *ast.GenDecl:
			for _, s := range d.Specs {
				switch s := s.(type) {
				case *ast.TypeSpec:
					decls = append(decls, s.Name.Name)
					if it, ok := s.Type.(*ast.InterfaceType); ok {
						for _, m := range it.Methods.List {
							for _, n := range m.Names {
								methods = append(methods, s.Name.Name+"."+n.Name)
							}
						}
					}
				case *ast.ValueSpec:
					for _, n := range s.Names {
						if n.Name != "_" {
							decls = append(decls, n.Name)
						}
					}
				}
			}
		}
	}
	return decls, methods
}

// TestNoDuplicateDeclarations checks, for every generated Go package, that
// no package-level identifier is declared twice across its .pb.go and
// .storks.go files (go vet would fail too, less legibly).
func TestNoDuplicateDeclarations(t *testing.T) {
	byPkg := make(map[string]map[string]string) // dir -> identifier -> file
	for name, src := range goldenFiles(t) {
		decls, _ := declarations(t, name, src)
		dir := path.Dir(name)
		if byPkg[dir] == nil {
			byPkg[dir] = make(map[string]string)
		}
		for _, d := range decls {
			if other, dup := byPkg[dir][d]; dup {
				t.Errorf("%s declared in both %s and %s", d, other, name)
			}
			byPkg[dir][d] = name
		}
	}
}

// TestCollisions checks how Storks names services whose derived
// identifiers are taken; see testdata/proto/collide.
func TestCollisions(t *testing.T) {
	files := goldenFiles(t)
	decls, methods := declarations(t, "collide.storks.go", files["collide/v1/collide.storks.go"])
	for _, want := range []string{
		// Service Foo: FooClient and UnimplementedFooServer are messages,
		// Foo_ServiceName and Foo_ServiceDesc enum values,
		// Foo_Bar_FullMethodName a oneof wrapper, RegisterFooServer an enum.
		"Foo_ServiceName_", "FooClient_", "fooClient", "NewFooClient", "FooServer",
		"UnimplementedFooServer_", "UnsafeFooServer", "RegisterFooServer_", "Foo_ServiceDesc_",
		"Foo_MustEmbedUnimplementedFooServer_FullMethodName", "Foo_Bar_FullMethodName_",
		"Foo_Get_FullMethodName", "Foo_Get__FullMethodName", "Foo_Bar_Baz_FullMethodName",
		// Service foo: same Go name as Foo, so everything one "_" further.
		"Foo_ServiceName__", "FooClient__", "fooClient_", "NewFooClient_", "FooServer_",
		"UnimplementedFooServer__", "UnsafeFooServer_", "RegisterFooServer__", "Foo_ServiceDesc__",
		"Foo_Bar_FullMethodName__",
		// Service Foo_Bar: its Baz method's constant was taken by Foo.Bar_Baz.
		"Foo_Bar_ServiceName", "Foo_BarClient", "Foo_Bar_Baz_FullMethodName_",
	} {
		if !slices.Contains(decls, want) {
			t.Errorf("collide.storks.go does not declare %s; it declares %v", want, decls)
		}
	}
	for _, want := range []string{
		"FooClient_.MustEmbedUnimplementedFooServer", // the RPC, not the marker
		"FooServer.MustEmbedUnimplementedFooServer",
		"FooServer.mustEmbedUnimplementedFooServer_", // derived from UnimplementedFooServer_
		"FooServer.Get", "FooServer.Get_", // rpc get, rpc Get
		"FooServer_.mustEmbedUnimplementedFooServer__",
	} {
		if !slices.Contains(methods, want) {
			t.Errorf("collide.storks.go has no interface method %s; it has %v", want, methods)
		}
	}
}

// TestKeywords checks that service and method names that are Go keywords
// get protogen's camel-cased Go names; see testdata/proto/keywords.
func TestKeywords(t *testing.T) {
	files := goldenFiles(t)
	decls, methods := declarations(t, "keywords.storks.go", files["keywords/keywords.storks.go"])
	for _, want := range []string{"ChanClient", "chanClient", "ChanServer", "RegisterChanServer", "InterfaceClient", "interfaceClient"} {
		if !slices.Contains(decls, want) {
			t.Errorf("keywords.storks.go does not declare %s", want)
		}
	}
	for _, m := range []string{"Func", "Type", "Go", "Select", "Map", "Range"} {
		if !slices.Contains(methods, "ChanClient."+m) || !slices.Contains(methods, "ChanServer."+m) {
			t.Errorf("no method %s in ChanClient and ChanServer: %v", m, methods)
		}
	}
	if !slices.Contains(methods, "InterfaceServer.Default") {
		t.Errorf("no method Default in InterfaceServer: %v", methods)
	}
}

// TestStreaming checks what streaming methods get: methods of every kind in
// both interfaces, a StreamDesc each in declaration order, and the stream
// type aliases under protoc-gen-go-grpc's names; see testdata/proto/stream.
func TestStreaming(t *testing.T) {
	src := goldenFiles(t)["stream/v1/stream.storks.go"]
	decls, methods := declarations(t, "stream.storks.go", src)
	for _, name := range []string{"Unary", "Watch", "Upload", "Chat", "Tail", "Last"} {
		for _, iface := range []string{"StreamerClient.", "StreamerServer."} {
			if !slices.Contains(methods, iface+name) {
				t.Errorf("no method %s%s", iface, name)
			}
		}
		if !slices.Contains(decls, "Streamer_"+name+"_FullMethodName") {
			t.Errorf("no constant Streamer_%s_FullMethodName", name)
		}
	}
	for _, want := range []string{
		"Streamer_WatchClient", "Streamer_WatchServer", "Streamer_UploadClient", "Streamer_UploadServer",
		"Streamer_ChatClient", "Streamer_ChatServer", "Streamer_TailClient", "Streamer_TailServer",
		"OnlyStreams_ChatClient", "OnlyStreams_ChatServer", "OnlyStreams_TicksClient", "OnlyStreams_CountServer",
	} {
		if !slices.Contains(decls, want) {
			t.Errorf("no alias %s", want)
		}
	}
	for _, unary := range []string{"Streamer_UnaryClient", "Streamer_UnaryServer", "Streamer_LastClient"} {
		if slices.Contains(decls, unary) {
			t.Errorf("alias %s declared for a unary method", unary)
		}
	}
	for _, want := range []string{
		"Watch(ctx context.Context, in *Msg, opts ...storks.CallOption) (storks.ServerStreamingClient[Msg], error)",
		"Upload(ctx context.Context, opts ...storks.CallOption) (storks.ClientStreamingClient[Msg, Msg], error)",
		"Chat(ctx context.Context, opts ...storks.CallOption) (storks.BidiStreamingClient[Msg, Msg], error)",
		"Watch(*Msg, storks.ServerStreamingServer[Msg]) error",
		"Upload(storks.ClientStreamingServer[Msg, Msg]) error",
		"Chat(storks.BidiStreamingServer[Msg, Msg]) error",
		// Streams lists the streaming methods in declaration order; the
		// client opens each with its own entry.
		"&Streamer_ServiceDesc.Streams[0], Streamer_Watch_FullMethodName,",
		"&Streamer_ServiceDesc.Streams[1], Streamer_Upload_FullMethodName,",
		"&Streamer_ServiceDesc.Streams[2], Streamer_Chat_FullMethodName,",
		"&Streamer_ServiceDesc.Streams[3], Streamer_Tail_FullMethodName,",
		"StreamName: \"Watch\",",
		"return srv.(StreamerServer).Watch(m, &storks.GenericServerStream[Msg, Msg]{ServerStream: stream})",
		"return srv.(StreamerServer).Chat(&storks.GenericServerStream[Msg, Msg]{ServerStream: stream})",
		"storks.BidiStreamingClient[emptypb.Empty, timestamppb.Timestamp]",
	} {
		if !strings.Contains(src, want) {
			t.Errorf("stream.storks.go does not contain %q", want)
		}
	}
	// Watch and Tail (server-streaming) send the request and half-close.
	if n := strings.Count(src, "x.ClientStream.CloseSend()"); n != 3 {
		t.Errorf("%d client methods half-close, want 3 (Watch, Tail, Ticks)", n)
	}
}

// TestStreamCollisions checks which stream type aliases are omitted because
// their names are taken, and that streaming methods named like the methods
// of streams are generated; see testdata/proto/streamcollide.
func TestStreamCollisions(t *testing.T) {
	files := goldenFiles(t)
	decls, methods := declarations(t, "streamcollide.storks.go", files["streamcollide/v1/streamcollide.storks.go"])
	for _, m := range []string{"Recv", "Send", "CloseSend", "Context", "Get", "Get_", "A_B"} {
		if !slices.Contains(methods, "PipeClient."+m) || !slices.Contains(methods, "PipeServer."+m) {
			t.Errorf("no method %s in PipeClient and PipeServer: %v", m, methods)
		}
	}
	for _, want := range []string{
		"Pipe_RecvServer", "Pipe_GetClient", "Pipe_Get_Client", "Pipe_Get_Server",
		"Pipe_A_BClient", "Pipe_A_BServer", "Pipe_CloseSendClient", "Pipe_ContextServer",
		// Service Pipe_Send keeps its interfaces, and Pipe_A.B its constant, renamed.
		"Pipe_SendClient", "Pipe_SendServer", "Pipe_A_B_FullMethodName_",
	} {
		if !slices.Contains(decls, want) {
			t.Errorf("streamcollide.storks.go does not declare %s", want)
		}
	}
	// Omitted: Pipe_RecvClient is a message, Pipe_GetServer an enum value;
	// Pipe_A's aliases for B are Pipe.A_B's.
	for _, taken := range []string{"Pipe_RecvClient", "Pipe_GetServer"} {
		if slices.Contains(decls, taken) {
			t.Errorf("streamcollide.storks.go declares %s, which protoc-gen-go declares", taken)
		}
	}
	for _, want := range []string{"Pipe_SendClient.Unary", "Pipe_AClient.B"} {
		if !slices.Contains(methods, want) {
			t.Errorf("no interface method %s", want)
		}
	}
}

// TestDeprecated checks where "Deprecated:" paragraphs go; see
// testdata/proto/multi (service Beta, method Gamma.Old).
func TestDeprecated(t *testing.T) {
	src := goldenFiles(t)["multi/v1/multi.storks.go"]
	f, err := parser.ParseFile(token.NewFileSet(), "multi.storks.go", src, parser.ParseComments)
	if err != nil {
		t.Fatal(err)
	}
	deprecated := make(map[string]bool)
	mark := func(name string, doc *ast.CommentGroup) {
		if doc != nil && strings.Contains(doc.Text(), "\nDeprecated: Do not use.\n") ||
			doc != nil && strings.HasPrefix(doc.Text(), "Deprecated: Do not use.\n") {
			deprecated[name] = true
		}
	}
	for _, d := range f.Decls {
		switch d := d.(type) {
		case *ast.FuncDecl:
			name := d.Name.Name
			if d.Recv != nil {
				name = types(d.Recv.List[0].Type) + "." + name
			}
			mark(name, d.Doc)
		case *ast.GenDecl:
			for _, s := range d.Specs {
				if ts, ok := s.(*ast.TypeSpec); ok {
					mark(ts.Name.Name, d.Doc)
					if it, ok := ts.Type.(*ast.InterfaceType); ok {
						for _, m := range it.Methods.List {
							for _, n := range m.Names {
								mark(ts.Name.Name+"."+n.Name, m.Doc)
							}
						}
					}
				}
			}
		}
	}
	want := []string{
		"BetaClient", "NewBetaClient", "BetaServer", "RegisterBetaServer",
		"GammaClient.Old", "GammaServer.Old", "gammaClient.Old",
	}
	got := sortedKeys(deprecated)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("deprecated identifiers\n got %v\nwant %v", got, want)
	}
}

// types renders a receiver type: "T" or "*T" both as "T".
func types(e ast.Expr) string {
	if s, ok := e.(*ast.StarExpr); ok {
		e = s.X
	}
	if id, ok := e.(*ast.Ident); ok {
		return id.Name
	}
	return ""
}
