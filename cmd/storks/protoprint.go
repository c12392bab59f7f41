package main

import (
	"bytes"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Printing descriptors in proto syntax, for describe. Neither protobuf-go
// nor grpc-go prints .proto source, so this does, from protoreflect
// descriptors: services with their methods and streams, messages with
// their fields, oneofs, maps, nested types and reserved numbers, enums,
// the options that descriptor.proto defines, and comments when the
// descriptors have source information. Names of the same package are
// printed relative to it. The output is stable: declaration order, options
// by number.

// printDescription prints what describe shows of d: a service, a method
// and its messages, a message or an enum; a field, oneof or enum value is
// shown by what declares it. Each declaration comes after a comment line
// with its full name and file.
func printDescription(b *bytes.Buffer, d protoreflect.Descriptor) {
	switch d := d.(type) {
	case protoreflect.MethodDescriptor:
		p := printer{b: b, pkg: d.ParentFile().Package()}
		p.header(d)
		p.method(d, "")
		for i, m := range []protoreflect.MessageDescriptor{d.Input(), d.Output()} {
			if i == 1 && m.FullName() == d.Input().FullName() {
				break
			}
			b.WriteString("\n")
			printDescription(b, m)
		}
		return
	case protoreflect.FieldDescriptor:
		if d.IsExtension() {
			p := printer{b: b, pkg: d.ParentFile().Package()}
			p.header(d)
			p.comments(d, "")
			fmt.Fprintf(b, "extend %s {\n", p.name(d.ContainingMessage(), d))
			p.field(d, "  ")
			b.WriteString("}\n")
			return
		}
		printDescription(b, d.ContainingMessage())
		return
	case protoreflect.OneofDescriptor:
		printDescription(b, d.Parent())
		return
	case protoreflect.EnumValueDescriptor:
		printDescription(b, d.Parent())
		return
	}
	p := printer{b: b, pkg: d.ParentFile().Package()}
	p.header(d)
	switch d := d.(type) {
	case protoreflect.ServiceDescriptor:
		p.service(d)
	case protoreflect.MessageDescriptor:
		p.message(d, "")
	case protoreflect.EnumDescriptor:
		p.enum(d, "")
	}
}

// printer writes declarations of the package pkg.
type printer struct {
	b   *bytes.Buffer
	pkg protoreflect.FullName
}

func (p *printer) header(d protoreflect.Descriptor) {
	fmt.Fprintf(p.b, "// %s in %s\n", d.FullName(), d.ParentFile().Path())
}

// name returns the name of d as written in a declaration of from:
// relative to the innermost of from's enclosing messages or package that
// holds d and where the name means d (no message nested deeper declares
// a type named as its first part), or else d's full name.
func (p *printer) name(d, from protoreflect.Descriptor) string {
	full := string(d.FullName())
	type scope struct {
		name string
		md   protoreflect.MessageDescriptor // nil for the package
	}
	var scopes []scope // innermost first
	for s := from; s != nil; s = s.Parent() {
		if md, ok := s.(protoreflect.MessageDescriptor); ok {
			scopes = append(scopes, scope{string(md.FullName()), md})
		}
	}
	if pkg := from.ParentFile().Package(); pkg != "" {
		scopes = append(scopes, scope{string(pkg), nil})
	}
	for i, s := range scopes {
		rel, ok := strings.CutPrefix(full, s.name+".")
		if !ok {
			continue
		}
		first, _, _ := strings.Cut(rel, ".")
		shadowed := false
		for _, in := range scopes[:i] {
			n := protoreflect.Name(first)
			if in.md.Messages().ByName(n) != nil || in.md.Enums().ByName(n) != nil {
				shadowed = true
			}
		}
		if !shadowed {
			return rel
		}
	}
	return full
}

// comments writes the leading comments of d.
func (p *printer) comments(d protoreflect.Descriptor, indent string) {
	loc := d.ParentFile().SourceLocations().ByDescriptor(d)
	p.commentLines(loc.LeadingComments, indent)
}

func (p *printer) commentLines(text, indent string) {
	if text == "" {
		return
	}
	for _, line := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
		p.b.WriteString(strings.TrimRight(indent+"//"+line, " ") + "\n")
	}
}

// end ends the line of d's declaration with its trailing comment, if any.
func (p *printer) end(d protoreflect.Descriptor, indent string) {
	trailing := d.ParentFile().SourceLocations().ByDescriptor(d).TrailingComments
	if trailing == "" || strings.Count(strings.TrimSuffix(trailing, "\n"), "\n") > 0 {
		p.b.WriteString("\n")
		p.commentLines(trailing, indent)
		return
	}
	p.b.WriteString(" //" + strings.TrimRight(strings.TrimSuffix(trailing, "\n"), " ") + "\n")
}

func (p *printer) service(sd protoreflect.ServiceDescriptor) {
	p.comments(sd, "")
	fmt.Fprintf(p.b, "service %s {\n", sd.Name())
	b := p.block("")
	p.options(sd.Options(), "  ")
	for i := 0; i < sd.Methods().Len(); i++ {
		m := sd.Methods().Get(i)
		b.member(m, false)
		p.method(m, "  ")
	}
	b.close()
}

// block is the body of a service, message, oneof or enum being printed:
// its options and reserved numbers, then its members.
type block struct {
	p      *printer
	indent string
	start  int  // where the body starts in p.b
	header bool // whether the body has options or reserved numbers
	first  bool // whether the next member is the first
}

// block starts the body of a declaration whose "{" line is written.
func (p *printer) block(indent string) *block {
	return &block{p: p, indent: indent, start: p.b.Len(), first: true}
}

// member separates the next member from what precedes it by a blank line
// when it is the first after the options and reserved numbers, when it
// has comments, and when always is set (nested declarations).
func (b *block) member(d protoreflect.Descriptor, always bool) {
	if b.first {
		b.header = b.p.b.Len() != b.start
	}
	comments := d.ParentFile().SourceLocations().ByDescriptor(d).LeadingComments != ""
	if b.first && b.header || !b.first && (always || comments) {
		b.p.b.WriteString("\n")
	}
	b.first = false
}

// close ends the block: "{}" when it is empty.
func (b *block) close() {
	if b.p.b.Len() == b.start {
		b.p.b.Truncate(b.start - 1)
		b.p.b.WriteString("}\n")
		return
	}
	b.p.b.WriteString(b.indent + "}\n")
}

func (p *printer) method(m protoreflect.MethodDescriptor, indent string) {
	p.comments(m, indent)
	stream := func(on bool) string {
		if on {
			return "stream "
		}
		return ""
	}
	fmt.Fprintf(p.b, "%srpc %s(%s%s) returns (%s%s)", indent, m.Name(),
		stream(m.IsStreamingClient()), p.name(m.Input(), m), stream(m.IsStreamingServer()), p.name(m.Output(), m))
	opts := optionList(m.Options())
	if len(opts) == 0 {
		p.b.WriteString(";")
		p.end(m, indent)
		return
	}
	p.b.WriteString(" {")
	p.end(m, indent+"  ")
	for _, o := range opts {
		fmt.Fprintf(p.b, "%s  option %s;\n", indent, o)
	}
	p.b.WriteString(indent + "}\n")
}

func (p *printer) message(md protoreflect.MessageDescriptor, indent string) {
	p.comments(md, indent)
	fmt.Fprintf(p.b, "%smessage %s {\n", indent, md.Name())
	b := p.block(indent)
	in := indent + "  "
	p.options(md.Options(), in)
	if r := md.ExtensionRanges(); r.Len() > 0 {
		var parts []string
		for i := 0; i < r.Len(); i++ {
			parts = append(parts, fieldRange(r.Get(i)))
		}
		fmt.Fprintf(p.b, "%sextensions %s;\n", in, strings.Join(parts, ", "))
	}
	if r := md.ReservedRanges(); r.Len() > 0 {
		var parts []string
		for i := 0; i < r.Len(); i++ {
			parts = append(parts, fieldRange(r.Get(i)))
		}
		fmt.Fprintf(p.b, "%sreserved %s;\n", in, strings.Join(parts, ", "))
	}
	p.reservedNames(md.ReservedNames(), in)
	fields := md.Fields()
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		od := fd.ContainingOneof()
		if od == nil || od.IsSynthetic() {
			b.member(fd, false)
			p.field(fd, in)
			continue
		}
		if od.Fields().Get(0) != fd {
			continue // printed with the first field of its oneof
		}
		b.member(od, false)
		p.comments(od, in)
		fmt.Fprintf(p.b, "%soneof %s {\n", in, od.Name())
		ob := p.block(in)
		p.options(od.Options(), in+"  ")
		for j := 0; j < od.Fields().Len(); j++ {
			ob.member(od.Fields().Get(j), false)
			p.field(od.Fields().Get(j), in+"  ")
		}
		ob.close()
	}
	for i := 0; i < md.Messages().Len(); i++ {
		if nested := md.Messages().Get(i); !nested.IsMapEntry() {
			b.member(nested, true)
			p.message(nested, in)
		}
	}
	for i := 0; i < md.Enums().Len(); i++ {
		b.member(md.Enums().Get(i), true)
		p.enum(md.Enums().Get(i), in)
	}
	for i := 0; i < md.Extensions().Len(); i++ {
		xd := md.Extensions().Get(i)
		b.member(xd, true)
		p.comments(xd, in)
		fmt.Fprintf(p.b, "%sextend %s {\n", in, p.name(xd.ContainingMessage(), xd))
		p.field(xd, in+"  ")
		p.b.WriteString(in + "}\n")
	}
	b.close()
}

// fieldRange writes a range of field numbers, [start, end).
func fieldRange(r [2]protoreflect.FieldNumber) string {
	switch {
	case r[1]-1 == r[0]:
		return strconv.Itoa(int(r[0]))
	case r[1]-1 == protowire.MaxValidNumber:
		return fmt.Sprintf("%d to max", r[0])
	}
	return fmt.Sprintf("%d to %d", r[0], r[1]-1)
}

func (p *printer) reservedNames(names protoreflect.Names, indent string) {
	if names.Len() == 0 {
		return
	}
	var parts []string
	for i := 0; i < names.Len(); i++ {
		parts = append(parts, strconv.Quote(string(names.Get(i))))
	}
	fmt.Fprintf(p.b, "%sreserved %s;\n", indent, strings.Join(parts, ", "))
}

func (p *printer) field(fd protoreflect.FieldDescriptor, indent string) {
	p.comments(fd, indent)
	var label string
	switch {
	case fd.IsMap(), fd.ContainingOneof() != nil && !fd.ContainingOneof().IsSynthetic():
	case fd.Cardinality() == protoreflect.Repeated:
		label = "repeated "
	case fd.Cardinality() == protoreflect.Required:
		label = "required "
	case fd.ParentFile().Syntax() == protoreflect.Proto2 || fd.HasOptionalKeyword():
		label = "optional "
	}
	var opts []string
	if fd.HasDefault() {
		opts = append(opts, "default = "+defaultValue(fd))
	}
	opts = append(opts, optionList(fd.Options())...)
	var bracket string
	if len(opts) > 0 {
		bracket = " [" + strings.Join(opts, ", ") + "]"
	}
	fmt.Fprintf(p.b, "%s%s%s %s = %d%s;", indent, label, p.fieldType(fd), fd.Name(), fd.Number(), bracket)
	p.end(fd, indent)
}

// fieldType returns the type of fd as declared: a scalar, a message or
// enum name, or map<K, V>.
func (p *printer) fieldType(fd protoreflect.FieldDescriptor) string {
	if fd.IsMap() {
		return fmt.Sprintf("map<%s, %s>", fd.MapKey().Kind(), p.typeName(fd.MapValue(), fd))
	}
	return p.typeName(fd, fd)
}

// typeName returns the type of fd as written in a declaration of from.
func (p *printer) typeName(fd protoreflect.FieldDescriptor, from protoreflect.Descriptor) string {
	switch fd.Kind() {
	case protoreflect.MessageKind, protoreflect.GroupKind:
		return p.name(fd.Message(), from)
	case protoreflect.EnumKind:
		return p.name(fd.Enum(), from)
	}
	return fd.Kind().String()
}

// defaultValue returns the explicit default of fd in proto syntax.
func defaultValue(fd protoreflect.FieldDescriptor) string {
	v := fd.Default()
	switch fd.Kind() {
	case protoreflect.EnumKind:
		return string(fd.DefaultEnumValue().Name())
	case protoreflect.StringKind:
		return strconv.Quote(v.String())
	case protoreflect.BytesKind:
		return strconv.Quote(string(v.Bytes()))
	case protoreflect.FloatKind, protoreflect.DoubleKind:
		return floatLiteral(v.Float())
	}
	return v.String()
}

func floatLiteral(f float64) string {
	switch {
	case math.IsInf(f, 1):
		return "inf"
	case math.IsInf(f, -1):
		return "-inf"
	case math.IsNaN(f):
		return "nan"
	}
	return strconv.FormatFloat(f, 'g', -1, 64)
}

func (p *printer) enum(ed protoreflect.EnumDescriptor, indent string) {
	p.comments(ed, indent)
	fmt.Fprintf(p.b, "%senum %s {\n", indent, ed.Name())
	b := p.block(indent)
	in := indent + "  "
	p.options(ed.Options(), in)
	if r := ed.ReservedRanges(); r.Len() > 0 {
		var parts []string
		for i := 0; i < r.Len(); i++ {
			rg := r.Get(i) // inclusive
			switch {
			case rg[0] == rg[1]:
				parts = append(parts, strconv.Itoa(int(rg[0])))
			case rg[1] == math.MaxInt32:
				parts = append(parts, fmt.Sprintf("%d to max", rg[0]))
			default:
				parts = append(parts, fmt.Sprintf("%d to %d", rg[0], rg[1]))
			}
		}
		fmt.Fprintf(p.b, "%sreserved %s;\n", in, strings.Join(parts, ", "))
	}
	p.reservedNames(ed.ReservedNames(), in)
	for i := 0; i < ed.Values().Len(); i++ {
		v := ed.Values().Get(i)
		b.member(v, false)
		p.comments(v, in)
		var bracket string
		if opts := optionList(v.Options()); len(opts) > 0 {
			bracket = " [" + strings.Join(opts, ", ") + "]"
		}
		fmt.Fprintf(p.b, "%s%s = %d%s;", in, v.Name(), v.Number(), bracket)
		p.end(v, in)
	}
	b.close()
}

// options writes the options of a service, message, oneof or enum as
// option statements.
func (p *printer) options(opts protoreflect.ProtoMessage, indent string) {
	for _, o := range optionList(opts) {
		fmt.Fprintf(p.b, "%soption %s;\n", indent, o)
	}
}

// optionList returns the options set in opts as "name = value", by field
// number: the scalar and enum options of descriptor.proto, and custom
// options (extensions) that this binary knows. Options that are messages
// or lists (features, uninterpreted options) are left out.
func optionList(opts protoreflect.ProtoMessage) []string {
	if opts == nil {
		return nil
	}
	m := opts.ProtoReflect()
	if !m.IsValid() {
		return nil
	}
	type option struct {
		num  protoreflect.FieldNumber
		text string
	}
	var list []option
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd.IsList() || fd.IsMap() || fd.Kind() == protoreflect.MessageKind || fd.Kind() == protoreflect.GroupKind {
			return true
		}
		name := string(fd.Name())
		if fd.IsExtension() {
			name = "(" + string(fd.FullName()) + ")"
		}
		list = append(list, option{fd.Number(), name + " = " + optionValue(fd, v)})
		return true
	})
	slices.SortFunc(list, func(a, b option) int { return int(a.num) - int(b.num) })
	out := make([]string, len(list))
	for i, o := range list {
		out[i] = o.text
	}
	return out
}

func optionValue(fd protoreflect.FieldDescriptor, v protoreflect.Value) string {
	switch fd.Kind() {
	case protoreflect.EnumKind:
		if ev := fd.Enum().Values().ByNumber(v.Enum()); ev != nil {
			return string(ev.Name())
		}
		return strconv.Itoa(int(v.Enum()))
	case protoreflect.StringKind:
		return strconv.Quote(v.String())
	case protoreflect.BytesKind:
		return strconv.Quote(string(v.Bytes()))
	case protoreflect.FloatKind, protoreflect.DoubleKind:
		return floatLiteral(v.Float())
	}
	return v.String()
}
