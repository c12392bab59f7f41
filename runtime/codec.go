package runtime

import (
	"fmt"

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
