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

// TestStreamingSkipped checks that streaming methods get a note instead of
// code; see testdata/proto/stream.
func TestStreamingSkipped(t *testing.T) {
	src := goldenFiles(t)["stream/v1/stream.storks.go"]
	_, methods := declarations(t, "stream.storks.go", src)
	for _, want := range []string{"StreamerClient.Unary", "StreamerClient.Last", "StreamerServer.Unary", "StreamerServer.Last"} {
		if !slices.Contains(methods, want) {
			t.Errorf("no method %s", want)
		}
	}
	for _, m := range methods {
		if strings.HasSuffix(m, ".Watch") || strings.HasSuffix(m, ".Upload") || strings.HasSuffix(m, ".Chat") {
			t.Errorf("streaming method generated: %s", m)
		}
	}
	for _, note := range []string{
		"// Method Watch is server-streaming, which this version of protoc-gen-storks does not generate.",
		"// Method Upload is client-streaming, which this version of protoc-gen-storks does not generate.",
		"// Method Chat is bidi-streaming, which this version of protoc-gen-storks does not generate.",
	} {
		// Once in each of StreamerClient and StreamerServer, and for Chat
		// in OnlyStreamsClient and OnlyStreamsServer too.
		want := 2
		if strings.Contains(note, "Chat") {
			want = 4
		}
		if got := strings.Count(src, note); got != want {
			t.Errorf("note %q appears %d times, want %d", note, got, want)
		}
	}
	for _, s := range []string{"Streamer_Watch_FullMethodName", `Name:       "Watch"`, `Name: "Chat"`} {
		if strings.Contains(src, s) {
			t.Errorf("generated code for a streaming method: %s", s)
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
