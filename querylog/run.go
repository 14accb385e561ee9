package querylog

import (
	"errors"
	"io/fs"
	"os"
	"strconv"
	"time"
)

// run is the only goroutine that touches the output. It encodes into one
// reused buffer and flushes whenever the queue runs empty, so lines reach
// the file promptly when idle and in large writes under load.
func (w *Writer) run() {
	defer close(w.done)
	var buf []byte
	for {
		select {
		case e := <-w.queue:
			buf = w.write(buf, &e)
			if len(w.queue) == 0 {
				w.flush()
			}
		case reply := <-w.control:
			// Entries queued before the request belong to the old file.
			// Bounded by the current length so a busy resolver cannot
			// postpone the reopen forever.
			for n := len(w.queue); n > 0; n-- {
				e := <-w.queue
				buf = w.write(buf, &e)
			}
			reply <- w.reopen()
		case <-w.quit:
			// Log can no longer enqueue (closed is set under the lock), so
			// whatever is in the queue now is everything that remains.
			for drained := false; !drained; {
				select {
				case e := <-w.queue:
					buf = w.write(buf, &e)
				default:
					drained = true
				}
			}
			w.flush()
			if w.f != nil {
				w.noteErr(w.f.Close())
			}
			return
		}
	}
}

func (w *Writer) write(buf []byte, e *Entry) []byte {
	buf = AppendJSON(buf[:0], e)
	if w.maxSize > 0 && !w.room(int64(len(buf))) {
		w.overSize.Add(1)
		return buf
	}
	n, err := w.bw.Write(buf)
	w.size += int64(n)
	if err != nil {
		w.noteErr(err)
		return buf
	}
	w.written.Add(1)
	return buf
}

// room reports whether n more bytes fit in the file under maxSize,
// rotating it first when they would not and rotation is on. Without
// rotation a full file is looked at again at most once a second, in case
// something outside (logrotate's copytruncate) emptied it.
func (w *Writer) room(n int64) bool {
	if w.size+n <= w.maxSize {
		return true
	}
	if w.maxFiles > 0 {
		w.rotate()
		return w.size+n <= w.maxSize
	}
	if now := w.now(); now.Sub(w.sizeChecked) >= time.Second {
		w.sizeChecked = now
		if st, err := w.f.Stat(); err == nil {
			w.size = st.Size() + int64(w.bw.Buffered())
		}
	}
	return w.size+n <= w.maxSize
}

// rotate renames path.N-1 to path.N, ..., path to path.1 (the rename
// replaces the oldest) and opens a fresh file at path. When a step fails
// the current file stays in use, and lines that do not fit are dropped.
func (w *Writer) rotate() {
	w.flush()
	for i := w.maxFiles - 1; i >= 1; i-- {
		err := os.Rename(w.rotated(i), w.rotated(i+1))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			w.noteErr(err)
			return
		}
	}
	if err := os.Rename(w.path, w.rotated(1)); err != nil {
		w.noteErr(err)
		return
	}
	f, size, err := openFile(w.path)
	if err != nil {
		w.noteErr(err)
		return
	}
	old := w.f
	w.f, w.out, w.size = f, f, size
	w.bw.Reset(f)
	w.noteErr(old.Close())
}

// rotated is the name of the i-th rotated file.
func (w *Writer) rotated(i int) string {
	return w.path + "." + strconv.Itoa(i)
}

func (w *Writer) flush() {
	w.noteErr(w.bw.Flush())
}

func (w *Writer) noteErr(err error) {
	if err == nil {
		return
	}
	w.writeErrs.Add(1)
	if w.err == nil {
		w.err = err
	}
	// A failed bufio.Writer keeps returning the same error forever; start
	// a fresh one so a transient failure (disk full) does not end logging.
	w.bw.Reset(w.out)
}

// reopen flushes to the old file, closes it and opens the path again.
// If the new open fails the old file stays in use, so logging continues
// to the renamed file rather than stopping.
func (w *Writer) reopen() error {
	w.flush()
	f, size, err := openFile(w.path)
	if err != nil {
		return err
	}
	old := w.f
	w.f, w.out, w.size = f, f, size
	w.bw.Reset(f)
	w.err = nil
	return old.Close()
}
