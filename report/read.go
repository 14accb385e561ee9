package report

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
)

// maxLine bounds one log line; real entries are a few hundred bytes, so a
// longer line is garbage and is skipped rather than buffered.
const maxLine = 64 << 10

func readFile(name string, agg *aggregator) error {
	var r io.Reader
	if name == "-" {
		r = os.Stdin
	} else {
		f, err := os.Open(name)
		if err != nil {
			return fmt.Errorf("report: %w", err)
		}
		defer f.Close()
		r = f
	}
	if err := read(r, agg); err != nil {
		return fmt.Errorf("report: %s: %w", name, err)
	}
	return nil
}

// read feeds every line of r, gunzipping it first when it starts with the
// gzip magic number.
func read(r io.Reader, agg *aggregator) error {
	br := bufio.NewReaderSize(r, maxLine)
	if magic, _ := br.Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return err
		}
		defer zr.Close()
		br = bufio.NewReaderSize(zr, maxLine)
	}
	for {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			agg.r.Malformed++
			if err := skipLine(br); err != nil {
				return err
			}
			continue
		}
		if len(bytes.TrimSpace(line)) > 0 {
			var l logLine
			if json.Unmarshal(line, &l) != nil || !agg.add(&l) {
				agg.r.Malformed++
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// skipLine discards the rest of an over-long line.
func skipLine(br *bufio.Reader) error {
	for {
		_, err := br.ReadSlice('\n')
		switch {
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case err == io.EOF:
			return nil
		default:
			return err
		}
	}
}
