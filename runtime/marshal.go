package runtime

import "google.golang.org/protobuf/proto"

// protoSized encodes a message whose size protoMarshal.Size has just
// computed (and cached in the message).
var protoSized = proto.MarshalOptions{UseCachedSize: true}

// appendMessage appends the encoding of v with codec to b, a frame being
// built in the pooled buffer bp, and returns the buffer and the frame. With
// the protobuf codec the size is computed first (the encoding then reuses
// it, so it costs no more than MarshalAppend alone), and a message that
// does not fit moves the frame to a pooled buffer of its size class,
// instead of MarshalAppend allocating one that is never reused. Another
// codec's MarshalAppend grows b as it does.
func appendMessage(codec Codec, bp *[]byte, b []byte, v any) (*[]byte, []byte, error) {
	if _, ok := codec.(ProtoCodec); ok {
		if m, ok := v.(proto.Message); ok {
			if n := len(b) + protoMarshal.Size(m); n > cap(b) {
				nbp := getBuf(n)
				nb := append((*nbp)[:0], b...)
				*bp = b
				putBuf(bp)
				bp, b = nbp, nb
			}
			b, err := protoSized.MarshalAppend(b, m)
			return bp, b, err
		}
	}
	b, err := codec.MarshalAppend(b, v)
	return bp, b, err
}
