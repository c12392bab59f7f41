package templates

import (
	"reflect"
	"strings"
	"testing"

	"google.golang.org/protobuf/compiler/protogen"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/pluginpb"
)

// newPlugin returns a protogen.Plugin for hand-built files, all of which are
// to be generated.
func newPlugin(t *testing.T, files ...*descriptorpb.FileDescriptorProto) *protogen.Plugin {
	t.Helper()
	req := &pluginpb.CodeGeneratorRequest{ProtoFile: files}
	for _, f := range files {
		req.FileToGenerate = append(req.FileToGenerate, f.GetName())
	}
	gen, err := protogen.Options{}.New(req)
	if err != nil {
		t.Fatal(err)
	}
	return gen
}

func file(name, pkg, goPackage string, messages []string, services ...*descriptorpb.ServiceDescriptorProto) *descriptorpb.FileDescriptorProto {
	f := &descriptorpb.FileDescriptorProto{
		Name:    proto.String(name),
		Package: proto.String(pkg),
		Syntax:  proto.String("proto3"),
		Options: &descriptorpb.FileOptions{GoPackage: proto.String(goPackage)},
		Service: services,
	}
	for _, m := range messages {
		f.MessageType = append(f.MessageType, &descriptorpb.DescriptorProto{Name: proto.String(m)})
	}
	return f
}

func service(name string, methods ...string) *descriptorpb.ServiceDescriptorProto {
	s := &descriptorpb.ServiceDescriptorProto{Name: proto.String(name)}
	for _, m := range methods {
		s.Method = append(s.Method, &descriptorpb.MethodDescriptorProto{
			Name:       proto.String(m),
			InputType:  proto.String(".a.M"),
			OutputType: proto.String(".a.M"),
		})
	}
	return s
}

func TestServiceNames(t *testing.T) {
	// b.proto shares a.proto's Go package and declares FooClient; Storks
	// must see it when naming a.proto's service Foo.
	gen := newPlugin(t,
		file("a.proto", "a", "example.com/p;p", []string{"M"}, service("Foo", "Get", "get")),
		file("b.proto", "b", "example.com/p;p", []string{"FooClient", "NewFooClient_"}),
	)
	sn := NewNames(gen).Service(gen.FilesByPath["a.proto"].Services[0])
	want := ServiceNames{
		Service:          sn.Service,
		Base:             "Foo",
		ServiceNameConst: "Foo_ServiceName",
		Client:           "FooClient_",
		ClientImpl:       "fooClient",
		NewClient:        "NewFooClient",
		Server:           "FooServer",
		Unimplemented:    "UnimplementedFooServer",
		Unsafe:           "UnsafeFooServer",
		Register:         "RegisterFooServer",
		Desc:             "Foo_ServiceDesc",
		MustEmbed:        "mustEmbedUnimplementedFooServer",
	}
	got := *sn
	got.Methods, got.Renames = nil, nil
	if !reflect.DeepEqual(got, want) {
		t.Errorf("names\n got %+v\nwant %+v", got, want)
	}
	if len(sn.Methods) != 2 {
		t.Fatalf("%d methods", len(sn.Methods))
	}
	if sn.Methods[0].ClientAlias != "" || sn.Methods[0].ServerAlias != "" {
		t.Errorf("unary method Get has stream aliases %q, %q", sn.Methods[0].ClientAlias, sn.Methods[0].ServerAlias)
	}
	for i, w := range []struct{ goName, constant string }{
		{"Get", "Foo_Get_FullMethodName"},
		{"Get_", "Foo_Get__FullMethodName"},
	} {
		m := sn.Methods[i]
		if m.GoName != w.goName || m.FullMethodNameConst != w.constant {
			t.Errorf("method %d: %q, %q; want %q, %q", i, m.GoName, m.FullMethodNameConst, w.goName, w.constant)
		}
	}
}

// TestDiagnostics checks the warnings for renamed identifiers (with what
// took each name tried) and omitted stream type aliases, in declaration
// order.
func TestDiagnostics(t *testing.T) {
	foo := service("Foo", "Get", "get", "Chat")
	foo.Method[2].ClientStreaming, foo.Method[2].ServerStreaming = proto.Bool(true), proto.Bool(true)
	gen := newPlugin(t,
		file("a.proto", "a", "example.com/p;p", []string{"M"}, foo, service("foo", "Get")),
		file("b.proto", "b", "example.com/p;p", []string{"FooClient", "Foo_ChatServer"}),
	)
	names := NewNames(gen)
	a := gen.FilesByPath["a.proto"]
	var got []string
	var kinds []DiagnosticKind
	for _, s := range a.Services {
		for _, d := range names.Service(s).Diagnostics(a) {
			got = append(got, d.Warning())
			kinds = append(kinds, d.Kind)
		}
	}
	want := []string{
		"protoc-gen-storks: warning: a.proto: service Foo: FooClient collides with message FooClient (b.proto) in package p; generated as FooClient_",
		"protoc-gen-storks: warning: a.proto: service Foo: method get: Get collides with the Go name of method Get; generated as Get_",
		"protoc-gen-storks: warning: a.proto: service Foo: method Chat: Foo_ChatServer collides with message Foo_ChatServer (b.proto) in package p; the grpc-go-style alias of its server stream type is omitted",
		"protoc-gen-storks: warning: a.proto: service foo: Foo_ServiceName collides with the name constant of service Foo in package p; generated as Foo_ServiceName_",
		"protoc-gen-storks: warning: a.proto: service foo: FooClient collides with message FooClient (b.proto), and FooClient_ with the client interface of service Foo, in package p; generated as FooClient__",
	}
	if len(got) < len(want) {
		t.Fatalf("got %d diagnostics, want at least %d:\n%s", len(got), len(want), strings.Join(got, "\n"))
	}
	for i, w := range want {
		if got[i] != w {
			t.Errorf("diagnostic %d:\n got %s\nwant %s", i, got[i], w)
		}
	}
	if !reflect.DeepEqual(kinds[:3], []DiagnosticKind{Renamed, Renamed, Omitted}) {
		t.Errorf("kinds %v", kinds[:3])
	}
	// Every identifier of foo is renamed; the last is its method's
	// constant.
	if last := got[len(got)-1]; last != "protoc-gen-storks: warning: a.proto: service foo: method Get: Foo_Get_FullMethodName collides with "+
		"the full method name constant of method Get of service Foo in package p; generated as Foo_Get_FullMethodName_" {
		t.Errorf("last diagnostic: %s", last)
	}
}

func TestImports(t *testing.T) {
	gen := newPlugin(t,
		file("a.proto", "a", "example.com/p;p", []string{"M"}),
		file("ctx.proto", "ctx", "example.com/ctx;context", []string{"C"}),
		file("in.proto", "in", "example.com/in/v1;in", []string{"I"}),
		file("x.proto", "x", "example.com/x/v1;xv1", []string{"X"}),
		// The generated file is for package y, which declares fooClient
		// (the client struct of Foo); z is a package named fooClient.
		file("y.proto", "y", "example.com/y;y", nil, service("Foo")),
		file("z.proto", "z", "example.com/z;fooClient", []string{"Z"}),
		file("s.proto", "s", "example.com/s;storks", []string{"S"}),
		// Named like the variables of streaming methods, and like io.
		file("m.proto", "m", "example.com/m;m", []string{"M"}),
		file("st.proto", "st", "example.com/stream;stream", []string{"S"}),
		file("xx.proto", "xx", "example.com/x;x", []string{"X"}),
		file("io.proto", "io", "example.com/io;io", []string{"I"}),
	)
	got := NewNames(gen).Imports("example.com/y", []string{
		"example.com/x/v1", "example.com/in/v1", runtimePackage, "example.com/ctx", contextPackage, "example.com/z", "example.com/s",
		"example.com/m", "example.com/stream", "example.com/x", "example.com/io", ioPackage,
	})
	want := map[string]Import{
		contextPackage:       {Name: "context"},
		runtimePackage:       {Name: "storks", Alias: true},
		"example.com/ctx":    {Name: "context1", Alias: true}, // after the standard library's
		"example.com/in/v1":  {Name: "in1", Alias: true},      // in is a parameter name
		"example.com/x/v1":   {Name: "xv1", Alias: true},      // not the last path element
		"example.com/z":      {Name: "fooClient1", Alias: true},
		"example.com/s":      {Name: "storks1", Alias: true}, // the runtime's name
		ioPackage:            {Name: "io"},
		"example.com/io":     {Name: "io1", Alias: true}, // after the standard library's
		"example.com/m":      {Name: "m1", Alias: true},
		"example.com/stream": {Name: "stream1", Alias: true},
		"example.com/x":      {Name: "x1", Alias: true},
	}
	for path, w := range want {
		if got[path] != w {
			t.Errorf("%s: got %+v, want %+v", path, got[path], w)
		}
	}
	if len(got) != len(want) {
		t.Errorf("got %d imports, want %d", len(got), len(want))
	}
}

// TestStreamAliases checks the names of the stream type aliases: those of
// protoc-gen-go-grpc, after the method's Go name, and none when the name is
// taken, even by an identifier of a service declared later.
func TestStreamAliases(t *testing.T) {
	foo := service("Foo", "Watch", "watch", "Bar", "Baz")
	for _, m := range foo.Method[:3] {
		m.ServerStreaming = proto.Bool(true)
	}
	foo.Method[3].ClientStreaming = proto.Bool(true)
	gen := newPlugin(t,
		file("a.proto", "a", "example.com/p;p", []string{"M", "Foo_BazClient"}, foo, service("Foo_Bar", "Get")),
	)
	sn := NewNames(gen).Service(gen.FilesByPath["a.proto"].Services[0])
	for i, w := range []struct{ client, server string }{
		{"Foo_WatchClient", "Foo_WatchServer"},
		{"Foo_Watch_Client", "Foo_Watch_Server"}, // Go name Watch_
		{"", ""},                                 // Foo_BarClient and Foo_BarServer: service Foo_Bar's interfaces
		{"", "Foo_BazServer"},                    // Foo_BazClient: a message
	} {
		if m := sn.Methods[i]; m.ClientAlias != w.client || m.ServerAlias != w.server {
			t.Errorf("method %d: aliases %q, %q; want %q, %q", i, m.ClientAlias, m.ServerAlias, w.client, w.server)
		}
	}
	bar := NewNames(gen).Service(gen.FilesByPath["a.proto"].Services[1])
	if bar.Client != "Foo_BarClient" || bar.Server != "Foo_BarServer" || len(bar.Renames) != 0 {
		t.Errorf("service Foo_Bar: %s, %s, renames %v; want Foo_BarClient, Foo_BarServer, none", bar.Client, bar.Server, bar.Renames)
	}
	if len(sn.Omissions) != 3 {
		t.Errorf("omissions %+v, want 3", sn.Omissions)
	}
}
