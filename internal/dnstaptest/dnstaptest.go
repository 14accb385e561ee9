// Package dnstaptest reads what a dnstap writer sends, for tests: the
// receiving end of a bidirectional Frame Streams connection.
package dnstaptest

import (
	"fmt"
	"net"
	"os"

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

// ReadFile reads every dnstap message of a Frame Streams file, as a file
// output writes it. It fails unless the file ends with the STOP frame, so
// a writer that did not close its output properly shows.
func ReadFile(path string) ([]*dt.Dnstap, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fr, err := framestream.NewReader(f, &framestream.ReaderOptions{ContentTypes: [][]byte{dt.FSContentType}})
	if err != nil {
		return nil, err
	}
	buf := make([]byte, 1<<16)
	var out []*dt.Dnstap
	for {
		n, err := fr.ReadFrame(buf)
		if err == framestream.EOF {
			return out, nil
		}
		if err != nil {
			return out, fmt.Errorf("after %d messages: %w", len(out), err)
		}
		m := &dt.Dnstap{}
		if err := proto.Unmarshal(buf[:n], m); err != nil {
			return out, fmt.Errorf("message %d: %w", len(out)+1, err)
		}
		out = append(out, m)
	}
}
