package templates

import (
	"go/token"
	"go/types"
	"path"
	"sort"
	"strconv"
	"unicode"
	"unicode/utf8"

	"google.golang.org/protobuf/compiler/protogen"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Names derives every Go identifier Storks generates, and the names under
// which generated files import other packages. It is the only place that
// knows how those identifiers are spelled.
//
// A derived identifier that is already taken in the target Go package gets
// "_" appended until it is free. Taken are the identifiers protoc-gen-go
// declares for every file in the plugin request that has the same Go import
// path (messages, nested messages, enums and their values and name/value
// maps, oneof wrappers and interfaces, extensions, proto2 defaults, opaque
// API builders and case constants, File_* descriptors), and the identifiers
// of Storks services named before. Services are named in a fixed order: the
// package's files sorted by proto path, services in declaration order. The
// result therefore depends only on the set of files of the package in the
// request, not on the order protoc lists them in.
//
// Generate every .proto file of one Go package in one protoc run (as
// protoc-gen-go also expects): files of the package that are not in the
// request cannot be seen.
type Names struct {
	gen      *protogen.Plugin
	packages map[protogen.GoImportPath]*packageNames
}

type packageNames struct {
	taken    map[string]bool
	services map[protoreflect.FullName]*ServiceNames
}

// ServiceNames are the Go identifiers generated for one service.
type ServiceNames struct {
	// Service is the service named.
	Service *protogen.Service

	// Base is the service's Go name as protogen camel-cases it: "Greeter".
	Base string

	ServiceNameConst string // Greeter_ServiceName
	Client           string // GreeterClient
	ClientImpl       string // greeterClient
	NewClient        string // NewGreeterClient
	Server           string // GreeterServer
	Unimplemented    string // UnimplementedGreeterServer
	Unsafe           string // UnsafeGreeterServer
	Register         string // RegisterGreeterServer
	Desc             string // Greeter_ServiceDesc

	// MustEmbed is the unexported method that forces server implementations
	// to embed Unimplemented: "mustEmbedUnimplementedGreeterServer". It is
	// derived from Unimplemented so two services never share it.
	MustEmbed string

	// Methods are the service's methods in declaration order, streaming ones
	// included (they have Streaming set and no names).
	Methods []*MethodNames
}

// MethodNames are the Go identifiers generated for one method.
type MethodNames struct {
	Method *protogen.Method

	// Streaming is set for client-, server- and bidi-streaming methods,
	// for which nothing is generated yet.
	Streaming bool

	// GoName is the Go method name in the client and server interfaces:
	// protogen's GoName, with "_" appended if an earlier method of the
	// service has the same Go name ("get" and "Get").
	GoName string

	// FullMethodNameConst is the constant holding "/pkg.Service/Method":
	// Greeter_SayHello_FullMethodName.
	FullMethodNameConst string
}

// TestEmbeddedByValue is the unexported method of every Unimplemented*Server
// that Register*Server calls to detect an Unimplemented*Server embedded by
// nil pointer. Unlike MustEmbed it is the same for all services.
const TestEmbeddedByValue = "testEmbeddedByValue"

// localNames are the parameter and variable names used inside generated
// function bodies. An import name equal to one of them would be shadowed,
// so imports never get these names.
var localNames = []string{"c", "ctx", "err", "in", "inv", "ok", "opts", "out", "req", "s", "srv", "t"}

// NewNames returns the Names for the files of gen.
func NewNames(gen *protogen.Plugin) *Names {
	return &Names{gen: gen, packages: make(map[protogen.GoImportPath]*packageNames)}
}

// Service returns the names generated for service, which must belong to a
// file of the plugin.
func (n *Names) Service(service *protogen.Service) *ServiceNames {
	file := n.fileOf(service.Desc.ParentFile())
	return n.pkg(file.GoImportPath).services[service.Desc.FullName()]
}

// Taken reports whether ident is declared in the Go package importPath by
// protoc-gen-go or by Storks.
func (n *Names) Taken(importPath protogen.GoImportPath, ident string) bool {
	return n.pkg(importPath).taken[ident]
}

func (n *Names) fileOf(fd protoreflect.FileDescriptor) *protogen.File {
	f, ok := n.gen.FilesByPath[fd.Path()]
	if !ok {
		// protogen builds FilesByPath from the same request, so every
		// descriptor it hands out has a File.
		panic("storks: no protogen.File for " + fd.Path())
	}
	return f
}

// pkg computes, once, the names for all services of the Go package.
func (n *Names) pkg(importPath protogen.GoImportPath) *packageNames {
	if p, ok := n.packages[importPath]; ok {
		return p
	}
	p := &packageNames{
		taken:    make(map[string]bool),
		services: make(map[protoreflect.FullName]*ServiceNames),
	}
	n.packages[importPath] = p

	var files []*protogen.File
	for _, f := range n.gen.Files {
		if f.GoImportPath == importPath {
			files = append(files, f)
		}
	}
	sort.Slice(files, func(i, j int) bool { return files[i].Desc.Path() < files[j].Desc.Path() })

	for _, f := range files {
		reserveProtocGenGo(p.taken, f)
	}
	for _, f := range files {
		for _, s := range f.Services {
			p.services[s.Desc.FullName()] = p.nameService(s)
		}
	}
	return p
}

// reserveProtocGenGo marks the package-level identifiers protoc-gen-go
// declares for f. It errs on the side of reserving too much: every API level
// (open, hybrid, opaque) is assumed.
func reserveProtocGenGo(taken map[string]bool, f *protogen.File) {
	taken[f.GoDescriptorIdent.GoName] = true
	for _, e := range f.Enums {
		reserveEnum(taken, e)
	}
	for _, m := range f.Messages {
		reserveMessage(taken, m)
	}
	for _, x := range f.Extensions {
		taken["E_"+x.GoIdent.GoName] = true
	}
}

func reserveEnum(taken map[string]bool, e *protogen.Enum) {
	taken[e.GoIdent.GoName] = true
	taken[e.GoIdent.GoName+"_name"] = true
	taken[e.GoIdent.GoName+"_value"] = true
	for _, v := range e.Values {
		taken[v.GoIdent.GoName] = true
	}
}

func reserveMessage(taken map[string]bool, m *protogen.Message) {
	name := m.GoIdent.GoName
	taken[name] = true
	taken[name+"_builder"] = true
	for _, e := range m.Enums {
		reserveEnum(taken, e)
	}
	for _, nested := range m.Messages {
		reserveMessage(taken, nested)
	}
	for _, x := range m.Extensions {
		taken["E_"+x.GoIdent.GoName] = true
	}
	for _, field := range m.Fields {
		if field.Desc.HasDefault() {
			taken["Default_"+name+"_"+field.GoName] = true
		}
	}
	for _, o := range m.Oneofs {
		if o.Desc.IsSynthetic() {
			continue
		}
		taken["is"+o.GoIdent.GoName] = true
		taken["is"+name+"_"+o.GoName] = true
		taken["case_"+name+"_"+o.GoName] = true
		taken[name+"_"+o.GoName+"_not_set_case"] = true
		for _, field := range o.Fields {
			taken[field.GoIdent.GoName] = true
			taken[name+"_"+field.GoName+"_case"] = true
		}
	}
}

// claim returns the first of name, name_, name__, ... that is not taken,
// and takes it.
func (p *packageNames) claim(name string) string {
	for p.taken[name] {
		name += "_"
	}
	p.taken[name] = true
	return name
}

func (p *packageNames) nameService(s *protogen.Service) *ServiceNames {
	base := s.GoName
	sn := &ServiceNames{Service: s, Base: base}
	sn.ServiceNameConst = p.claim(base + "_ServiceName")
	sn.Client = p.claim(base + "Client")
	sn.ClientImpl = p.claim(unexport(base + "Client"))
	sn.NewClient = p.claim("New" + base + "Client")
	sn.Server = p.claim(base + "Server")
	sn.Unimplemented = p.claim("Unimplemented" + base + "Server")
	sn.Unsafe = p.claim("Unsafe" + base + "Server")
	sn.Register = p.claim("Register" + base + "Server")
	sn.Desc = p.claim(base + "_ServiceDesc")
	sn.MustEmbed = "mustEmbed" + sn.Unimplemented

	// Method names only need to be unique within the service's interfaces.
	// They are exported (protogen capitalizes them), so they never clash
	// with MustEmbed or TestEmbeddedByValue.
	methods := make(map[string]bool)
	for _, m := range s.Methods {
		mn := &MethodNames{
			Method:    m,
			Streaming: m.Desc.IsStreamingClient() || m.Desc.IsStreamingServer(),
		}
		sn.Methods = append(sn.Methods, mn)
		if mn.Streaming {
			continue
		}
		goName := m.GoName
		for methods[goName] {
			goName += "_"
		}
		methods[goName] = true
		mn.GoName = goName
		mn.FullMethodNameConst = p.claim(base + "_" + goName + "_FullMethodName")
	}
	return sn
}

// Unary returns the service's unary methods.
func (sn *ServiceNames) Unary() []*MethodNames {
	var out []*MethodNames
	for _, m := range sn.Methods {
		if !m.Streaming {
			out = append(out, m)
		}
	}
	return out
}

// Import is how a generated file imports a package.
type Import struct {
	// Name is the identifier the file refers to the package by.
	Name string
	// Alias is set when the import spec must spell Name out: when it is not
	// the package's declared name, or not the last element of its path
	// (which is what a reader, and goimports, would assume).
	Alias bool
}

// Imports returns how a generated file of the Go package importPath imports
// each of paths (which must not contain importPath). context and the Storks
// runtime keep their own names whenever possible; other packages get the
// package name protoc-gen-go gave them. A name that is a Go keyword or
// predeclared identifier, a parameter name used in generated bodies, an
// identifier of the package, or the name of an earlier import gets a number
// appended. Paths are named in sorted order after context and the runtime,
// so the result is deterministic.
func (n *Names) Imports(importPath protogen.GoImportPath, paths []string) map[string]Import {
	p := n.pkg(importPath)
	used := make(map[string]bool)
	for _, s := range types.Universe.Names() {
		used[s] = true
	}
	for _, s := range localNames {
		used[s] = true
	}

	sorted := append([]string(nil), paths...)
	rank := func(s string) int {
		switch s {
		case contextPackage:
			return 0
		case runtimePackage:
			return 1
		}
		return 2
	}
	sort.Slice(sorted, func(i, j int) bool {
		if ri, rj := rank(sorted[i]), rank(sorted[j]); ri != rj {
			return ri < rj
		}
		return sorted[i] < sorted[j]
	})

	imports := make(map[string]Import, len(sorted))
	for _, ip := range sorted {
		pkgName := n.packageName(ip)
		name := pkgName
		for i := 1; used[name] || p.taken[name] || token.IsKeyword(name); i++ {
			name = pkgName + strconv.Itoa(i)
		}
		used[name] = true
		imports[ip] = Import{Name: name, Alias: name != pkgName || name != path.Base(ip)}
	}
	return imports
}

// packageName returns the declared name of the Go package at importPath.
func (n *Names) packageName(importPath string) string {
	for _, f := range n.gen.Files {
		if string(f.GoImportPath) == importPath {
			return string(f.GoPackageName)
		}
	}
	// Not a package generated from .proto (context, runtime): by Go
	// convention, the last path element.
	return path.Base(importPath)
}

// unexport lowercases the first letter of s.
func unexport(s string) string {
	r, size := utf8.DecodeRuneInString(s)
	return string(unicode.ToLower(r)) + s[size:]
}
