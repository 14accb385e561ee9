package querylog

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
	if _, err := w.bw.Write(buf); err != nil {
		w.noteErr(err)
		return buf
	}
	w.written.Add(1)
	return buf
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
	f, err := openFile(w.path)
	if err != nil {
		return err
	}
	old := w.f
	w.f, w.out = f, f
	w.bw.Reset(f)
	w.err = nil
	return old.Close()
}
