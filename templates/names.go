package templates

import (
	"go/token"
	"go/types"
	"path"
	"sort"
	"strconv"
	"strings"
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
// "_" appended until it is free; the ServiceNames record each such rename
// with what took the name, for [ServiceNames.Diagnostics]. The one
// exception are the type aliases of stream types under protoc-gen-go-grpc's
// names (<Svc>_<Method>Client and <Svc>_<Method>Server): they exist only so
// that code written for grpc-go compiles, which a renamed alias would not
// help, so an alias whose name is taken is omitted instead, and the
// omission recorded. Aliases are named after every other identifier of the
// package, so that they give way to those, never the reverse. Taken are the
// identifiers protoc-gen-go declares for every file in the plugin request
// that has the same Go import path (messages, nested messages, enums and
// their values and name/value maps, oneof wrappers and interfaces,
// extensions, proto2 defaults, opaque API builders and case constants,
// File_* descriptors), and the identifiers of Storks services named before.
// Services are named in a fixed order: the package's files sorted by proto
// path, services in declaration order. The
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
	name     protogen.GoPackageName
	taken    map[string]declaration
	services map[protoreflect.FullName]*ServiceNames
}

// declaration describes what declares a taken identifier, for warnings.
type declaration struct {
	what string // "message FooClient", "the client interface of service Foo"
	file string // the .proto file it comes from
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

	// Methods are the service's methods in declaration order.
	Methods []*MethodNames

	// Renames are the identifiers of the service and of its methods that
	// were taken, so that others were generated instead, in the order they
	// were named.
	Renames []Rename

	// Omissions are the stream type aliases of the service's methods that
	// were taken, and so are not declared, in the order they were named.
	Omissions []Omission
}

// A Rename records a derived identifier that was already taken, and the
// one generated instead.
type Rename struct {
	// Method is the method the identifier is for; nil for an identifier
	// of the service.
	Method *MethodNames
	// Wanted is the derived identifier, Generated the one generated:
	// Wanted followed by one or more "_".
	Wanted, Generated string
	// TakenBy says, for Wanted and each name tried after it, what had
	// taken it: len(TakenBy) == len(Generated) - len(Wanted).
	TakenBy []string
	// Package is the Go package the identifier is declared in, or "" for
	// a method of the client and server interfaces.
	Package protogen.GoPackageName
}

// An Omission records a stream type alias whose name was taken, and that
// is therefore not declared.
type Omission struct {
	// Method is the streaming method the alias is for.
	Method *MethodNames
	// Name is the alias's name: <Svc>_<Method>Client or <Svc>_<Method>Server.
	Name string
	// Side is "client" or "server": whose stream type the alias names.
	Side string
	// TakenBy says what had taken Name.
	TakenBy string
	// Package is the Go package the alias would be declared in.
	Package protogen.GoPackageName
}

// MethodNames are the Go identifiers generated for one method.
type MethodNames struct {
	Method *protogen.Method

	// GoName is the Go method name in the client and server interfaces:
	// protogen's GoName, with "_" appended if an earlier method of the
	// service has the same Go name ("get" and "Get").
	GoName string

	// FullMethodNameConst is the constant holding "/pkg.Service/Method":
	// Greeter_SayHello_FullMethodName.
	FullMethodNameConst string

	// ClientAlias and ServerAlias, for a streaming method, are the type
	// aliases of the stream types of its client and server methods under
	// the names protoc-gen-go-grpc gives them, for code written for
	// grpc-go: Chat_TalkClient, Chat_TalkServer. Either is "" if the
	// method is unary, or if the name was taken (see Omissions).
	ClientAlias, ServerAlias string
}

// TestEmbeddedByValue is the unexported method of every Unimplemented*Server
// that Register*Server calls to detect an Unimplemented*Server embedded by
// nil pointer. Unlike MustEmbed it is the same for all services.
const TestEmbeddedByValue = "testEmbeddedByValue"

// localNames are the parameter and variable names used inside generated
// function bodies. An import name equal to one of them would be shadowed,
// so imports never get these names.
var localNames = []string{"c", "ctx", "err", "in", "inv", "m", "ok", "opts", "out", "req", "s", "srv", "stream", "t", "x"}

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
	_, ok := n.pkg(importPath).taken[ident]
	return ok
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
		taken:    make(map[string]declaration),
		services: make(map[protoreflect.FullName]*ServiceNames),
	}
	n.packages[importPath] = p

	var files []*protogen.File
	for _, f := range n.gen.Files {
		if f.GoImportPath == importPath {
			files = append(files, f)
			p.name = f.GoPackageName
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
	// The stream type aliases only once every other identifier of the
	// package is named: an alias gives way to those, never the reverse.
	for _, f := range files {
		for _, s := range f.Services {
			p.nameAliases(p.services[s.Desc.FullName()])
		}
	}
	return p
}

// reserveProtocGenGo marks the package-level identifiers protoc-gen-go
// declares for f. It errs on the side of reserving too much: every API level
// (open, hybrid, opaque) is assumed.
func reserveProtocGenGo(taken map[string]declaration, f *protogen.File) {
	r := reserver{taken: taken, file: f.Desc.Path(), pkg: f.Desc.Package()}
	// Named after the file: a warning names the file when it is not the
	// service's own.
	r.take(f.GoDescriptorIdent.GoName, "the file descriptor")
	for _, e := range f.Enums {
		r.enum(e)
	}
	for _, m := range f.Messages {
		r.message(m)
	}
	for _, x := range f.Extensions {
		r.take("E_"+x.GoIdent.GoName, "extension "+r.name(x.Desc))
	}
}

// reserver takes the identifiers protoc-gen-go declares for one file.
type reserver struct {
	taken map[string]declaration
	file  string
	pkg   protoreflect.FullName
}

func (r reserver) take(ident, what string) {
	r.taken[ident] = declaration{what: what, file: r.file}
}

// name is d's full name without the proto package: "Foo.Kind".
func (r reserver) name(d protoreflect.Descriptor) string {
	full := string(d.FullName())
	if r.pkg != "" {
		full = strings.TrimPrefix(full, string(r.pkg)+".")
	}
	return full
}

func (r reserver) enum(e *protogen.Enum) {
	name := r.name(e.Desc)
	r.take(e.GoIdent.GoName, "enum "+name)
	r.take(e.GoIdent.GoName+"_name", "the name map of enum "+name)
	r.take(e.GoIdent.GoName+"_value", "the value map of enum "+name)
	for _, v := range e.Values {
		r.take(v.GoIdent.GoName, "value "+string(v.Desc.Name())+" of enum "+name)
	}
}

func (r reserver) message(m *protogen.Message) {
	goName := m.GoIdent.GoName
	name := r.name(m.Desc)
	r.take(goName, "message "+name)
	r.take(goName+"_builder", "the builder of message "+name)
	for _, e := range m.Enums {
		r.enum(e)
	}
	for _, nested := range m.Messages {
		r.message(nested)
	}
	for _, x := range m.Extensions {
		r.take("E_"+x.GoIdent.GoName, "extension "+r.name(x.Desc))
	}
	for _, field := range m.Fields {
		if field.Desc.HasDefault() {
			r.take("Default_"+goName+"_"+field.GoName, "the default of field "+r.name(field.Desc))
		}
	}
	for _, o := range m.Oneofs {
		if o.Desc.IsSynthetic() {
			continue
		}
		oneof := "oneof " + r.name(o.Desc)
		r.take("is"+o.GoIdent.GoName, "the interface of "+oneof)
		r.take("is"+goName+"_"+o.GoName, "the interface of "+oneof)
		r.take("case_"+goName+"_"+o.GoName, "the case type of "+oneof)
		r.take(goName+"_"+o.GoName+"_not_set_case", "a case constant of "+oneof)
		for _, field := range o.Fields {
			r.take(field.GoIdent.GoName, "the wrapper of field "+r.name(field.Desc)+" of "+oneof)
			r.take(goName+"_"+field.GoName+"_case", "a case constant of "+oneof)
		}
	}
}

// claim returns the first of name, name_, name__, ... that is not taken,
// and takes it for d. If name was taken it records a Rename in sn.
func (p *packageNames) claim(sn *ServiceNames, m *MethodNames, name string, d declaration) string {
	return sn.claim(p.taken, p.name, m, name, d)
}

// claim is packageNames.claim for any set of taken names; pkg is "" for
// the names of interface methods.
func (sn *ServiceNames) claim(taken map[string]declaration, pkg protogen.GoPackageName, m *MethodNames, name string, d declaration) string {
	wanted := name
	var takenBy []string
	for {
		prev, ok := taken[name]
		if !ok {
			break
		}
		takenBy = append(takenBy, prev.from(d.file))
		name += "_"
	}
	taken[name] = d
	if len(takenBy) > 0 {
		sn.Renames = append(sn.Renames, Rename{Method: m, Wanted: wanted, Generated: name, TakenBy: takenBy, Package: pkg})
	}
	return name
}

func (p *packageNames) nameService(s *protogen.Service) *ServiceNames {
	base := s.GoName
	sn := &ServiceNames{Service: s, Base: base}
	file := s.Desc.ParentFile().Path()
	of := func(role string) declaration {
		return declaration{what: "the " + role + " of service " + string(s.Desc.Name()), file: file}
	}
	sn.ServiceNameConst = p.claim(sn, nil, base+"_ServiceName", of("name constant"))
	sn.Client = p.claim(sn, nil, base+"Client", of("client interface"))
	sn.ClientImpl = p.claim(sn, nil, unexport(base+"Client"), of("client type"))
	sn.NewClient = p.claim(sn, nil, "New"+base+"Client", of("client constructor"))
	sn.Server = p.claim(sn, nil, base+"Server", of("server interface"))
	sn.Unimplemented = p.claim(sn, nil, "Unimplemented"+base+"Server", of("unimplemented server"))
	sn.Unsafe = p.claim(sn, nil, "Unsafe"+base+"Server", of("unsafe server interface"))
	sn.Register = p.claim(sn, nil, "Register"+base+"Server", of("registration function"))
	sn.Desc = p.claim(sn, nil, base+"_ServiceDesc", of("service descriptor"))
	sn.MustEmbed = "mustEmbed" + sn.Unimplemented

	// Method names only need to be unique within the service's interfaces.
	// They are exported (protogen capitalizes them), so they never clash
	// with MustEmbed or TestEmbeddedByValue.
	methods := make(map[string]declaration)
	for _, m := range s.Methods {
		mn := &MethodNames{Method: m}
		sn.Methods = append(sn.Methods, mn)
		name := string(m.Desc.Name())
		mn.GoName = sn.claim(methods, "", mn, m.GoName, declaration{what: "the Go name of method " + name, file: file})
		mn.FullMethodNameConst = p.claim(sn, mn, base+"_"+mn.GoName+"_FullMethodName",
			of("full method name constant of method "+name))
	}
	return sn
}

// nameAliases names the stream type aliases of sn's streaming methods, or
// records their omission when the name is taken.
func (p *packageNames) nameAliases(sn *ServiceNames) {
	file := sn.Service.Desc.ParentFile().Path()
	for _, m := range sn.Methods {
		if !isStreaming(m.Method) {
			continue
		}
		of := func(side string) declaration {
			return declaration{
				what: "the " + side + " stream alias of method " + string(m.Method.Desc.Name()) + " of service " + string(sn.Service.Desc.Name()),
				file: file,
			}
		}
		m.ClientAlias = p.claimOptional(sn, m, sn.Base+"_"+m.GoName+"Client", "client", of("client"))
		m.ServerAlias = p.claimOptional(sn, m, sn.Base+"_"+m.GoName+"Server", "server", of("server"))
	}
}

// claimOptional takes name for d and returns it, if it is free. If it is
// taken, it records an Omission in sn and returns "".
func (p *packageNames) claimOptional(sn *ServiceNames, m *MethodNames, name, side string, d declaration) string {
	if prev, ok := p.taken[name]; ok {
		sn.Omissions = append(sn.Omissions, Omission{Method: m, Name: name, Side: side, TakenBy: prev.from(d.file), Package: p.name})
		return ""
	}
	p.taken[name] = d
	return name
}

// from describes d for a warning about an identifier of file: what it is,
// and its file if that is another.
func (d declaration) from(file string) string {
	if d.file != file {
		return d.what + " (" + d.file + ")"
	}
	return d.what
}

// isStreaming reports whether m is client-, server- or bidi-streaming.
func isStreaming(m *protogen.Method) bool {
	return m.Desc.IsStreamingClient() || m.Desc.IsStreamingServer()
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
// each of paths (which must not contain importPath). context and io keep
// their own names and the Storks runtime is imported as "storks" (its
// conventional alias, see runtimeImportName) whenever possible; other
// packages get the package name protoc-gen-go gave them. A name that is a
// Go keyword or predeclared identifier, a parameter or variable name used in
// generated bodies, an identifier of the package, or the name of an earlier
// import gets a number appended. Paths are named in sorted order after
// context, io and the runtime, so the result is deterministic.
func (n *Names) Imports(importPath protogen.GoImportPath, paths []string) map[string]Import {
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
		case contextPackage, ioPackage:
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
		base := pkgName
		if ip == runtimePackage {
			base = runtimeImportName
		}
		name := base
		for i := 1; used[name] || n.Taken(importPath, name) || token.IsKeyword(name); i++ {
			name = base + strconv.Itoa(i)
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
	// Not a package generated from .proto (context, io, runtime): by Go
	// convention, the last path element.
	return path.Base(importPath)
}

// unexport lowercases the first letter of s.
func unexport(s string) string {
	r, size := utf8.DecodeRuneInString(s)
	return string(unicode.ToLower(r)) + s[size:]
}
