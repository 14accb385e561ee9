package dnstest

import (
	"net"

	"github.com/miekg/dns"
)

// Recorder is a dns.ResponseWriter that keeps the last message written,
// for calling a dns.Handler without a socket.
type Recorder struct {
	Local, Remote net.Addr // what LocalAddr and RemoteAddr return
	Out           []byte   // the last message written, packed; nil: none
}

func (w *Recorder) LocalAddr() net.Addr  { return w.Local }
func (w *Recorder) RemoteAddr() net.Addr { return w.Remote }
func (w *Recorder) Write(b []byte) (int, error) {
	w.Out = b
	return len(b), nil
}
func (w *Recorder) WriteMsg(m *dns.Msg) error {
	b, err := m.Pack()
	w.Out = b
	return err
}
func (w *Recorder) Close() error        { return nil }
func (w *Recorder) TsigStatus() error   { return nil }
func (w *Recorder) TsigTimersOnly(bool) {}
func (w *Recorder) Hijack()             {}
