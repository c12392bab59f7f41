package templates

import (
	"strings"

	"google.golang.org/protobuf/compiler/protogen"
)

// A Diagnostic is a warning about the code generated for a .proto file: an
// identifier generated under another name than the usual one, or a stream
// type alias omitted because its name is taken. The generator returns
// diagnostics instead of printing them; protoc-gen-storks and storks
// generate print each as [Diagnostic.Warning].
type Diagnostic struct {
	// Kind is what happened.
	Kind DiagnosticKind
	// File is the .proto file, as protoc names it: "greeter/v1/greeter.proto".
	File string
	// Service and Method are the proto names of the service and of the
	// method ("" for the service itself) the diagnostic is about.
	Service, Method string
	// Message says what happened, starting with the method if there is
	// one: "GreeterClient collides with message GreeterClient in package
	// greeterv1; generated as GreeterClient_", "method Talk:
	// Chat_TalkClient collides with message Chat_TalkClient in package
	// chatv1; the grpc-go-style alias of its client stream type is
	// omitted".
	Message string
}

// DiagnosticKind is what a [Diagnostic] reports.
type DiagnosticKind int

const (
	// Renamed: a derived identifier was taken and got "_" appended.
	Renamed DiagnosticKind = iota + 1
	// Omitted: the name of a stream type alias (<Svc>_<Method>Client or
	// <Svc>_<Method>Server, protoc-gen-go-grpc's names, for code written
	// for grpc-go) was taken, so the alias is not declared. Everything
	// else of the method is generated.
	Omitted
)

// String returns "FILE: service SERVICE: MESSAGE".
func (d Diagnostic) String() string {
	return d.File + ": service " + d.Service + ": " + d.Message
}

// Warning returns the line protoc-gen-storks writes to stderr for d (which
// protoc passes through), and storks generate too:
// "protoc-gen-storks: warning: FILE: service SERVICE: MESSAGE".
func (d Diagnostic) Warning() string {
	return PluginName + ": warning: " + d.String()
}

// Diagnostics returns the diagnostics of the service, for file, in the
// order the generated code declares things: the renamed identifiers of the
// service, then per method in declaration order its renamed identifiers and
// its omitted stream type aliases.
func (sn *ServiceNames) Diagnostics(file *protogen.File) []Diagnostic {
	service := string(sn.Service.Desc.Name())
	var out []Diagnostic
	add := func(kind DiagnosticKind, m *MethodNames, msg string) {
		d := Diagnostic{Kind: kind, File: file.Desc.Path(), Service: service, Message: msg}
		if m != nil {
			d.Method = string(m.Method.Desc.Name())
			d.Message = "method " + d.Method + msg
		}
		out = append(out, d)
	}
	renames := func(m *MethodNames) {
		for _, r := range sn.Renames {
			if r.Method == m {
				msg := r.message()
				if m != nil {
					msg = ": " + msg
				}
				add(Renamed, m, msg)
			}
		}
	}
	renames(nil)
	for _, m := range sn.Methods {
		renames(m)
		for _, o := range sn.Omissions {
			if o.Method == m {
				add(Omitted, m, ": "+o.message())
			}
		}
	}
	return out
}

// message describes the omission: "Chat_TalkClient collides with message
// Chat_TalkClient in package chatv1; the grpc-go-style alias of its client
// stream type is omitted".
func (o Omission) message() string {
	return o.Name + " collides with " + o.TakenBy + " in package " + string(o.Package) +
		"; the grpc-go-style alias of its " + o.Side + " stream type is omitted"
}

// message describes the rename: "FooClient collides with message
// FooClient, and FooClient_ with the client interface of service Foo, in
// package p; generated as FooClient__".
func (r Rename) message() string {
	parts := make([]string, len(r.TakenBy))
	name := r.Wanted
	for i, what := range r.TakenBy {
		if i == 0 {
			parts[i] = name + " collides with " + what
		} else {
			parts[i] = name + " with " + what
		}
		name += "_"
	}
	msg := parts[0]
	if n := len(parts); n > 1 {
		msg = strings.Join(parts[:n-1], ", ") + ", and " + parts[n-1]
		if r.Package != "" {
			msg += ","
		}
	}
	if r.Package != "" {
		msg += " in package " + string(r.Package)
	}
	return msg + "; generated as " + r.Generated
}
