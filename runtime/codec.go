package runtime

import (
	"fmt"
	"reflect"

	"google.golang.org/protobuf/proto"
)

// Codec turns messages into payload bytes and back.
type Codec interface {
	// Name identifies the codec in errors.
	Name() string
	// MarshalAppend appends the encoding of v to buf.
	MarshalAppend(buf []byte, v any) ([]byte, error)
	// Unmarshal decodes data into v. data is only valid during the call.
	Unmarshal(data []byte, v any) error
}

// ProtoCodec is the default codec: protobuf binary encoding.
type ProtoCodec struct{}

var protoMarshal = proto.MarshalOptions{}

// Name returns "proto".
func (ProtoCodec) Name() string { return "proto" }

// MarshalAppend appends the protobuf encoding of v, which must be a
// proto.Message.
func (ProtoCodec) MarshalAppend(buf []byte, v any) ([]byte, error) {
	m, ok := v.(proto.Message)
	if !ok {
		return buf, fmt.Errorf("proto codec: %T is not a proto.Message", v)
	}
	return protoMarshal.MarshalAppend(buf, m)
}

// Unmarshal decodes protobuf data into v, which must be a proto.Message.
func (ProtoCodec) Unmarshal(data []byte, v any) error {
	m, ok := v.(proto.Message)
	if !ok {
		return fmt.Errorf("proto codec: %T is not a proto.Message", v)
	}
	return proto.Unmarshal(data, m)
}

// copyMessage makes dst a deep copy of src, so that the two share nothing:
// a protobuf message of the same type (the same descriptor) is reset and
// merged (proto.Reset and proto.Merge); anything else (another codec's
// type, or protobuf messages proto.Merge cannot mix) is encoded with codec
// and decoded into dst, as a network round trip would. It is how an
// in-process call copies its request for the handler and fills the
// caller's reply, and how a Failbackup call whose second request wins fills
// the caller's reply.
func copyMessage(codec Codec, dst, src any) error {
	if d, ok := dst.(proto.Message); ok {
		if s, ok := src.(proto.Message); ok {
			if d == s {
				return nil // resetting dst would empty src
			}
			dm, sm := d.ProtoReflect(), s.ProtoReflect()
			if dm.Descriptor() == sm.Descriptor() && dm.IsValid() {
				proto.Reset(d)
				proto.Merge(d, s)
				return nil
			}
		}
	}
	if dv, sv := reflect.ValueOf(dst), reflect.ValueOf(src); dv.Kind() == reflect.Pointer && dv.Type() == sv.Type() && dv.Pointer() == sv.Pointer() {
		return nil
	}
	b, err := codec.MarshalAppend(nil, src)
	if err != nil {
		return err
	}
	return codec.Unmarshal(b, dst)
}
