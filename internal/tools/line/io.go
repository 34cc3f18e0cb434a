package line

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
)

// MaxLineSize bounds one line read: a message of MaxMessageSize whose
// body is all characters JSON escapes as \u00XX is six times as long.
const MaxLineSize = 8 << 20

// Writer writes lines, each in one Write call to the underlying writer.
type Writer struct {
	w   io.Writer
	buf bytes.Buffer
	enc *json.Encoder
}

// NewWriter writes lines to w. Buffering and syncing are the caller's.
func NewWriter(w io.Writer) *Writer {
	lw := &Writer{w: w}
	lw.enc = json.NewEncoder(&lw.buf)
	lw.enc.SetEscapeHTML(false)
	return lw
}

// Write writes l as one line.
func (w *Writer) Write(l *Line) error {
	w.buf.Reset()
	if err := w.enc.Encode(l); err != nil {
		return err
	}
	_, err := w.w.Write(w.buf.Bytes())
	return err
}

// Error is a line that is not a message SQS would take; reading goes on
// after it.
type Error struct {
	// Line is its number, from 1.
	Line int
	Err  error
}

func (e *Error) Error() string { return fmt.Sprintf("line %d: %v", e.Line, e.Err) }
func (e *Error) Unwrap() error { return e.Err }

// Reader reads lines one at a time, in constant memory (one line, at most
// MaxLineSize).
type Reader struct {
	br   *bufio.Reader
	buf  []byte
	n    int
	done bool
}

// NewReader reads lines from r.
func NewReader(r io.Reader) *Reader {
	return &Reader{br: bufio.NewReaderSize(r, 64<<10)}
}

// Next returns the next message and its line number, skipping blank
// lines, and io.EOF after the last. A line that cannot be read as a
// message, or that SQS would refuse (Line.Check), is an *Error, after
// which Next may be called again; any other error is the input's own.
func (r *Reader) Next() (Line, int, error) {
	for {
		raw, err := r.readLine()
		if err != nil {
			return Line{}, r.n, err
		}
		if len(bytes.TrimSpace(raw)) == 0 {
			continue
		}
		l, err := decode(raw)
		if err == nil {
			err = l.Check()
		}
		if err != nil {
			return Line{}, r.n, &Error{Line: r.n, Err: err}
		}
		return l, r.n, nil
	}
}

// readLine returns the next line without its newline; a line longer than
// MaxLineSize is read to its end and returned as an *Error.
func (r *Reader) readLine() ([]byte, error) {
	if r.done {
		return nil, io.EOF
	}
	r.buf = r.buf[:0]
	r.n++
	tooLong := false
	for {
		chunk, err := r.br.ReadSlice('\n')
		if !tooLong && len(r.buf)+len(chunk) > MaxLineSize+1 {
			tooLong, r.buf = true, r.buf[:0]
		}
		if !tooLong {
			r.buf = append(r.buf, chunk...)
		}
		switch {
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF):
			r.done = true
			if len(r.buf) == 0 && !tooLong {
				return nil, io.EOF
			}
		case err != nil:
			return nil, err
		}
		if tooLong {
			return nil, &Error{Line: r.n, Err: fmt.Errorf("longer than %d MiB: no SQS message is that large", MaxLineSize>>20)}
		}
		return bytes.TrimSuffix(bytes.TrimSuffix(r.buf, []byte("\n")), []byte("\r")), nil
	}
}

// wire is Line as decoded, to tell a missing body from an empty one.
type wire struct {
	MessageID         string               `json:"message_id"`
	Body              *string              `json:"body"`
	MD5OfBody         string               `json:"md5_of_body"`
	Attributes        map[string]string    `json:"attributes"`
	MessageAttributes map[string]Attribute `json:"message_attributes"`
	QueueURL          string               `json:"queue_url"`
}

var fields = []string{"message_id", "body", "md5_of_body", "attributes", "message_attributes", "queue_url"}

func decode(raw []byte) (Line, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	var w wire
	if err := dec.Decode(&w); err != nil {
		return Line{}, explainJSON(err)
	}
	if dec.More() {
		return Line{}, errors.New("more than one JSON value on the line: one message per line")
	}
	if w.Body == nil {
		return Line{}, errors.New(`no "body": each line is a JSON object with at least a "body" string`)
	}
	return Line{MessageID: w.MessageID, Body: *w.Body, MD5OfBody: w.MD5OfBody, Attributes: w.Attributes,
		MessageAttributes: w.MessageAttributes, QueueURL: w.QueueURL}, nil
}

func explainJSON(err error) error {
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	var be base64.CorruptInputError
	switch {
	case errors.As(err, &te) && te.Field == "":
		return fmt.Errorf("a JSON %s, not an object: each line is one message as a JSON object", te.Value)
	case errors.As(err, &te):
		return fmt.Errorf("%q is a JSON %s, want %s", te.Field, te.Value, jsonKind(te.Type))
	case errors.As(err, &be):
		return fmt.Errorf("a binary_value is not base64: %w", err)
	case errors.As(err, &se), errors.Is(err, io.ErrUnexpectedEOF):
		return fmt.Errorf("not valid JSON: %w", err)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return fmt.Errorf("%s: a line has only %s", strings.TrimPrefix(err.Error(), "json: "), strings.Join(fields, ", "))
	}
	return err
}

func jsonKind(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Map, reflect.Struct:
		return "an object"
	case reflect.Slice:
		return "a base64 string"
	default:
		return "a " + t.Kind().String()
	}
}
