package querylog

import (
	"bufio"
	"errors"
	"fmt"
	"github.com/egressd/egressd/linerate"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Decision values written in the decision field.
const (
	DecisionAllow     = "allow"
	DecisionDeny      = "deny"
	DecisionWouldDeny = "would_deny"
	DecisionRefused   = "refused"
)

// DefaultBuffer is how many entries may wait for the writer goroutine
// before Log starts dropping.
const DefaultBuffer = 8192

// Options tunes a Writer.
type Options struct {
	// SampleAllowed logs one in N entries whose decision is "allow"; 0 and
	// 1 log all of them. Every other decision is never sampled (only
	// DeniedPerClientRate bounds it), because denials are what operators
	// and `egressd report` need to see.
	SampleAllowed int
	// Buffer is the queue length between Log and the writer goroutine;
	// 0 means DefaultBuffer.
	Buffer int
	// MaxSize caps a file destination in bytes; 0 leaves it unbounded.
	// A line that would take the file past it first rotates the file when
	// MaxFiles > 0 (path to path.1, path.1 to path.2, ..., the one past
	// MaxFiles removed), and is otherwise dropped and counted in
	// DroppedOverSize until Reopen finds room.
	MaxSize  int64
	MaxFiles int
	// DeniedPerClientRate limits the lines of queries not allowed (deny,
	// would_deny, refused) to this many a second per client, after a
	// burst of one second's worth; 0 leaves them unlimited. Lines left out
	// are counted in Suppressed and in the suppressed field of the
	// client's next line.
	DeniedPerClientRate float64

	now func() time.Time // for tests; time.Now when nil
}

// Writer writes entries as JSON lines from one goroutine so that Log never
// waits on disk or a slow stdout consumer.
type Writer struct {
	path    string // "" unless the destination is a file
	discard bool
	sample  uint64
	now     func() time.Time
	denied  *linerate.Limiter // nil when denied lines are not limited

	maxSize  int64 // 0: no cap
	maxFiles int

	// mu guards closed against a concurrent Close: Log holds it for reading
	// while it enqueues, so after Close takes it no entry can slip into the
	// queue behind the final drain.
	mu     sync.RWMutex
	closed bool

	queue   chan Entry
	control chan chan error // Reopen requests
	quit    chan struct{}
	done    chan struct{}

	// Owned by the run goroutine; Close reads err only after it ended.
	out io.Writer
	f   *os.File // nil for stdout
	bw  *bufio.Writer
	err error // first write error since the last open, reported by Close
	// size is the current file's length plus what bw holds for it.
	size int64
	// sizeChecked is when a full file was last looked at again (it may
	// have been truncated by copytruncate).
	sizeChecked time.Time

	allowSeen  atomic.Uint64
	sampledOut atomic.Uint64
	dropped    atomic.Uint64
	written    atomic.Uint64
	writeErrs  atomic.Uint64
	overSize   atomic.Uint64
	suppressed atomic.Uint64
}

// Open returns a Writer for dest: "stdout", "none" or "" (discard
// everything), or a file path, which is created with mode 0640 if missing
// and appended to.
func Open(dest string, opts Options) (*Writer, error) {
	switch dest {
	case "", "none":
		return &Writer{discard: true}, nil
	case "stdout":
		return newWriter(os.Stdout, nil, "", opts), nil
	default:
		f, size, err := openFile(dest)
		if err != nil {
			return nil, err
		}
		w := newWriter(f, f, dest, opts)
		w.size = size
		return w, nil
	}
}

// newWriter starts the writer goroutine on out; f and path are set when
// out is a file that Reopen and Close manage.
func newWriter(out io.Writer, f *os.File, path string, opts Options) *Writer {
	w := &Writer{path: path, out: out, f: f, sample: 1, now: opts.now}
	if w.now == nil {
		w.now = time.Now
	}
	if opts.SampleAllowed > 1 {
		w.sample = uint64(opts.SampleAllowed)
	}
	if opts.DeniedPerClientRate > 0 {
		w.denied = linerate.New(opts.DeniedPerClientRate, maxRateClients, w.now)
	}
	if f != nil && opts.MaxSize > 0 {
		w.maxSize, w.maxFiles = opts.MaxSize, max(opts.MaxFiles, 0)
	}
	n := opts.Buffer
	if n <= 0 {
		n = DefaultBuffer
	}
	w.queue = make(chan Entry, n)
	w.control = make(chan chan error)
	w.quit = make(chan struct{})
	w.done = make(chan struct{})
	w.bw = bufio.NewWriterSize(out, 64<<10)
	go w.run()
	return w
}

// openFile opens path for appending and returns its current size.
func openFile(path string) (*os.File, int64, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return nil, 0, fmt.Errorf("query log: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, fmt.Errorf("query log: %w", err)
	}
	return f, st.Size(), nil
}

// Log queues e for writing unless sampling or a discarding destination
// drops it; it is Keep followed by Write.
func (w *Writer) Log(e *Entry) {
	if w.Keep(e.Decision) {
		w.Write(e)
	}
}

// Keep reports whether the next entry with this decision is to be
// written, counting it in SampledOut when sampling skips it. Callers that
// ask first build only the entries that will be written, then pass them
// to Write. Keep on a nil or discarding Writer is false.
func (w *Writer) Keep(decision string) bool {
	if w == nil || w.discard {
		return false
	}
	if decision == DecisionAllow && w.sample > 1 {
		// The first allowed entry is always kept, then every sample-th.
		if (w.allowSeen.Add(1)-1)%w.sample != 0 {
			w.sampledOut.Add(1)
			return false
		}
	}
	return true
}

// Write queues e for writing and returns at once, without sampling. It
// copies e, so the caller may reuse it, but must not modify e.Answers
// afterwards. A zero Time is set to now. When the queue is full the entry
// is counted in Dropped instead of slowing down the DNS answer. Write on a
// nil or discarding Writer does nothing.
func (w *Writer) Write(e *Entry) {
	if w == nil || w.discard {
		return
	}
	entry := *e
	if entry.Time.IsZero() {
		entry.Time = w.now()
	}
	if w.denied != nil && entry.Decision != DecisionAllow {
		ok, suppressed := w.denied.Allow(entry.Client)
		if !ok {
			w.suppressed.Add(1)
			return
		}
		entry.Suppressed = suppressed
	}
	w.mu.RLock()
	defer w.mu.RUnlock()
	if w.closed {
		w.dropped.Add(1)
		return
	}
	select {
	case w.queue <- entry:
	default:
		w.dropped.Add(1)
	}
}

// Dropped is how many entries were lost because the queue was full or the
// Writer was already closed. The counters read 0 on a nil Writer.
func (w *Writer) Dropped() uint64 {
	if w == nil {
		return 0
	}
	return w.dropped.Load()
}

// DroppedOverSize is how many lines were left out because the file had
// reached MaxSize and could not be rotated.
func (w *Writer) DroppedOverSize() uint64 {
	if w == nil {
		return 0
	}
	return w.overSize.Load()
}

// Suppressed is how many lines of denied queries DeniedPerClientRate left
// out.
func (w *Writer) Suppressed() uint64 {
	if w == nil {
		return 0
	}
	return w.suppressed.Load()
}

// SampledOut is how many allowed entries sampling skipped on purpose.
func (w *Writer) SampledOut() uint64 {
	if w == nil {
		return 0
	}
	return w.sampledOut.Load()
}

// Written is how many lines reached the output buffer.
func (w *Writer) Written() uint64 {
	if w == nil {
		return 0
	}
	return w.written.Load()
}

// WriteErrors is how many write or flush calls failed.
func (w *Writer) WriteErrors() uint64 {
	if w == nil {
		return 0
	}
	return w.writeErrs.Load()
}

// Reopen closes and reopens the file, so that after logrotate renamed it
// new entries go to a fresh file at the configured path. Entries logged
// before Reopen was called are written to the old file first; entries
// logged concurrently may land in either; none is lost. For stdout and
// discard it does nothing.
func (w *Writer) Reopen() error {
	if w == nil || w.path == "" {
		return nil
	}
	w.mu.RLock()
	closed := w.closed
	w.mu.RUnlock()
	if closed {
		return errors.New("query log: reopen after close")
	}
	reply := make(chan error, 1)
	select {
	case w.control <- reply:
		return <-reply
	case <-w.done:
		return errors.New("query log: reopen after close")
	}
}

// Close writes every queued entry, flushes and closes the file. Entries
// logged after Close are counted as dropped. It returns the first write
// error seen since the file was last opened.
func (w *Writer) Close() error {
	if w == nil || w.discard {
		return nil
	}
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		<-w.done
		return nil
	}
	w.closed = true
	w.mu.Unlock()
	close(w.quit)
	<-w.done
	return w.err
}

// maxRateClients bounds the clients whose denied-line budget is tracked.
const maxRateClients = 4096
