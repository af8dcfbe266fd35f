package submission

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"unicode/utf8"

	"github.com/runbox/runbox/pkg/catalog"
)

// Policy holds the size limits of a request and the default and maximum
// resource limits of a run. The zero value of a field means its default.
type Policy struct {
	// MaxBodyBytes caps the request body. Default 1 MiB.
	MaxBodyBytes int64
	// MaxSourceBytes caps the source. Default 64 KiB.
	MaxSourceBytes int
	// MaxStdinBytes caps stdin. Default 512 KiB.
	MaxStdinBytes int
	// MaxArgs caps the number of program arguments. Default 64.
	MaxArgs int
	// MaxArgBytes caps the length of one argument. Default 4 KiB.
	MaxArgBytes int
	// DefaultTimeMS is the wall-clock limit when the request sets none.
	// Default 5000.
	DefaultTimeMS int
	// MaxTimeMS is the highest wall-clock limit a request may set.
	// Default 20000.
	MaxTimeMS int
	// DefaultMemoryMB is the memory limit when the request sets none.
	// Default 256.
	DefaultMemoryMB int
	// MaxMemoryMB is the highest memory limit a request may set.
	// Default 1024.
	MaxMemoryMB int
}

// Defaults of Policy, as documented on its fields.
const (
	DefaultMaxBodyBytes   = 1 << 20
	DefaultMaxSourceBytes = 64 << 10
	DefaultMaxStdinBytes  = 512 << 10
	DefaultMaxArgs        = 64
	DefaultMaxArgBytes    = 4 << 10
	DefaultTimeMS         = 5000
	DefaultMaxTimeMS      = 20000
	DefaultMemoryMB       = 256
	DefaultMaxMemoryMB    = 1024
	minimumTimeMS         = 1
	minimumMemoryMB       = 16
)

// WithDefaults returns the policy with every zero field set to its default.
func (p Policy) WithDefaults() Policy {
	set := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	if p.MaxBodyBytes == 0 {
		p.MaxBodyBytes = DefaultMaxBodyBytes
	}
	set(&p.MaxSourceBytes, DefaultMaxSourceBytes)
	set(&p.MaxStdinBytes, DefaultMaxStdinBytes)
	set(&p.MaxArgs, DefaultMaxArgs)
	set(&p.MaxArgBytes, DefaultMaxArgBytes)
	set(&p.DefaultTimeMS, DefaultTimeMS)
	set(&p.MaxTimeMS, DefaultMaxTimeMS)
	set(&p.DefaultMemoryMB, DefaultMemoryMB)
	set(&p.MaxMemoryMB, DefaultMaxMemoryMB)
	return p
}

// RequestError is a rejected request: the HTTP status, a machine-readable
// code, the offending field (a JSON path such as "limits.time_ms") and a
// message that says what is allowed.
type RequestError struct {
	Status  int    `json:"-"`
	Code    string `json:"code"`
	Field   string `json:"field,omitempty"`
	Message string `json:"message"`
	// Allowed lists the accepted values where they are few, such as the
	// language ids.
	Allowed []string `json:"allowed,omitempty"`
}

func (e *RequestError) Error() string { return e.Message }

func invalidField(field, format string, args ...any) *RequestError {
	return &RequestError{
		Status:  http.StatusUnprocessableEntity,
		Code:    "invalid_field",
		Field:   field,
		Message: fmt.Sprintf(format, args...),
	}
}

func tooLarge(field string, limit int) *RequestError {
	return &RequestError{
		Status:  http.StatusRequestEntityTooLarge,
		Code:    "too_large",
		Field:   field,
		Message: fmt.Sprintf("%s must be at most %d bytes", field, limit),
	}
}

// Decode reads one JSON request from body, which the caller has already
// capped at MaxBodyBytes. It rejects unknown fields, wrong types and
// anything after the JSON value.
func (p Policy) Decode(body io.Reader) (*Request, *RequestError) {
	p = p.WithDefaults()
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	var req Request
	if err := dec.Decode(&req); err != nil {
		return nil, p.decodeError(err)
	}
	var extra json.RawMessage
	if err := dec.Decode(&extra); err != io.EOF {
		if tooLargeErr := p.bodyTooLarge(err); tooLargeErr != nil {
			return nil, tooLargeErr
		}
		return nil, &RequestError{
			Status:  http.StatusBadRequest,
			Code:    "malformed_json",
			Message: "the body must contain exactly one JSON object, but more data follows it",
		}
	}
	return &req, nil
}

func (p Policy) bodyTooLarge(err error) *RequestError {
	var maxErr *http.MaxBytesError
	if errors.As(err, &maxErr) {
		return &RequestError{
			Status:  http.StatusRequestEntityTooLarge,
			Code:    "too_large",
			Message: fmt.Sprintf("the request body must be at most %d bytes", p.MaxBodyBytes),
		}
	}
	return nil
}

func (p Policy) decodeError(err error) *RequestError {
	if e := p.bodyTooLarge(err); e != nil {
		return e
	}
	var typeErr *json.UnmarshalTypeError
	var syntaxErr *json.SyntaxError
	switch {
	case errors.As(err, &typeErr):
		field := typeErr.Field
		e := invalidField(field, "%s must be %s, not a JSON %s",
			field, p.describeField(field), typeErr.Value)
		return e
	case errors.As(err, &syntaxErr):
		return &RequestError{
			Status:  http.StatusBadRequest,
			Code:    "malformed_json",
			Message: fmt.Sprintf("the body is not valid JSON: %v (at byte %d)", err, syntaxErr.Offset),
		}
	case errors.Is(err, io.EOF):
		return &RequestError{
			Status:  http.StatusBadRequest,
			Code:    "malformed_json",
			Message: "the body is empty; send a JSON object with language and source",
		}
	case errors.Is(err, io.ErrUnexpectedEOF):
		return &RequestError{
			Status:  http.StatusBadRequest,
			Code:    "malformed_json",
			Message: "the body ends in the middle of a JSON value",
		}
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		name := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		return &RequestError{
			Status:  http.StatusBadRequest,
			Code:    "unknown_field",
			Field:   name,
			Message: fmt.Sprintf("unknown field %q; allowed fields are language, source, stdin, args and limits (time_ms, memory_mb)", name),
		}
	default:
		return &RequestError{
			Status:  http.StatusBadRequest,
			Code:    "malformed_json",
			Message: "the body is not a valid request: " + err.Error(),
		}
	}
}

// describeField says what type and range a field takes, for error messages.
func (p Policy) describeField(field string) string {
	switch field {
	case "language", "source", "stdin":
		return "a string"
	case "args":
		return "an array of strings"
	case "limits":
		return "an object with time_ms and memory_mb"
	case "limits.time_ms":
		return fmt.Sprintf("an integer from %d to %d", minimumTimeMS, p.MaxTimeMS)
	case "limits.memory_mb":
		return fmt.Sprintf("an integer from %d to %d", minimumMemoryMB, p.MaxMemoryMB)
	}
	if strings.HasPrefix(field, "args") {
		return "a string"
	}
	return "of another type"
}

// Validate checks a decoded request against the catalogue and the policy
// and returns the effective limits of the run. Limits outside the allowed
// range are rejected, never clamped.
func (p Policy) Validate(req *Request, languages *catalog.Catalog) (Limits, *RequestError) {
	p = p.WithDefaults()
	if strings.TrimSpace(req.Language) == "" {
		e := invalidField("language", "language is required; supported languages are %s",
			strings.Join(languages.IDs(), ", "))
		e.Allowed = languages.IDs()
		return Limits{}, e
	}
	lang, ok := languages.Get(req.Language)
	if !ok {
		e := invalidField("language", "unknown language %q; supported languages are %s",
			req.Language, strings.Join(languages.IDs(), ", "))
		e.Code = "unknown_language"
		e.Allowed = languages.IDs()
		return Limits{}, e
	}
	if err := p.validateText(req); err != nil {
		return Limits{}, err
	}
	if err := p.validateArgs(req.Args); err != nil {
		return Limits{}, err
	}
	return p.effectiveLimits(req.Limits, lang)
}

func (p Policy) validateText(req *Request) *RequestError {
	if strings.TrimSpace(req.Source) == "" {
		return invalidField("source", "source must not be empty or only white space")
	}
	if len(req.Source) > p.MaxSourceBytes {
		return tooLarge("source", p.MaxSourceBytes)
	}
	if !utf8.ValidString(req.Source) {
		return invalidField("source", "source must be valid UTF-8")
	}
	if len(req.Stdin) > p.MaxStdinBytes {
		return tooLarge("stdin", p.MaxStdinBytes)
	}
	return nil
}

func (p Policy) validateArgs(args []string) *RequestError {
	if len(args) > p.MaxArgs {
		return invalidField("args", "args must have at most %d items, not %d", p.MaxArgs, len(args))
	}
	for i, arg := range args {
		field := fmt.Sprintf("args[%d]", i)
		if len(arg) > p.MaxArgBytes {
			return tooLarge(field, p.MaxArgBytes)
		}
		if strings.IndexByte(arg, 0) >= 0 {
			return invalidField(field, "%s must not contain a NUL byte", field)
		}
	}
	return nil
}

func (p Policy) effectiveLimits(requested *RequestLimits, lang *catalog.Language) (Limits, *RequestError) {
	limits := Limits{TimeMS: p.DefaultTimeMS, MemoryMB: p.DefaultMemoryMB}
	if lang.Limits.TimeMS > 0 {
		limits.TimeMS = min(lang.Limits.TimeMS, p.MaxTimeMS)
	}
	if lang.Limits.MemoryMB > 0 {
		limits.MemoryMB = min(lang.Limits.MemoryMB, p.MaxMemoryMB)
	}
	if requested == nil {
		return limits, nil
	}
	if v := requested.TimeMS; v != nil {
		if *v < minimumTimeMS || *v > p.MaxTimeMS {
			return Limits{}, invalidField("limits.time_ms",
				"limits.time_ms must be an integer from %d to %d, not %d",
				minimumTimeMS, p.MaxTimeMS, *v)
		}
		limits.TimeMS = *v
	}
	if v := requested.MemoryMB; v != nil {
		if *v < minimumMemoryMB || *v > p.MaxMemoryMB {
			return Limits{}, invalidField("limits.memory_mb",
				"limits.memory_mb must be an integer from %d to %d, not %d",
				minimumMemoryMB, p.MaxMemoryMB, *v)
		}
		limits.MemoryMB = *v
	}
	return limits, nil
}

// IsJSONContentType reports whether a Content-Type header names JSON, with
// or without parameters such as charset.
func IsJSONContentType(header string) bool {
	mediaType, _, _ := strings.Cut(header, ";")
	return strings.EqualFold(strings.TrimSpace(mediaType), "application/json")
}
