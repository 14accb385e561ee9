// Package dnstaptest reads what a dnstap writer sends, for tests: the
// receiving end of a bidirectional Frame Streams connection.
package dnstaptest

import (
	"net"

	dt "github.com/dnstap/golang-dnstap"
	framestream "github.com/farsightsec/golang-framestream"
	"google.golang.org/protobuf/proto"
)

// ReadFrames accepts the Frame Streams handshake on c, then calls fn with
// each dnstap message until the stream ends or a frame does not decode.
// It closes c.
func ReadFrames(c net.Conn, fn func(*dt.Dnstap)) {
	defer c.Close()
	fr, err := framestream.NewReader(c, &framestream.ReaderOptions{
		ContentTypes: [][]byte{dt.FSContentType}, Bidirectional: true})
	if err != nil {
		return
	}
	buf := make([]byte, 1<<16)
	for {
		n, err := fr.ReadFrame(buf)
		if err != nil {
			return
		}
		m := &dt.Dnstap{}
		if err := proto.Unmarshal(buf[:n], m); err != nil {
			return
		}
		fn(m)
	}
}
