package submission

import (
	"bytes"
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
	// Default holds the limits of a request that sets none; see
	// DefaultLimits.
	Default Limits
	// Max holds the highest limits a request may set; see MaxLimits.
	Max Limits
}

// Defaults of Policy, as documented on its fields.
const (
	DefaultMaxBodyBytes   = 1 << 20
	DefaultMaxSourceBytes = 64 << 10
	DefaultMaxStdinBytes  = 512 << 10
	DefaultMaxArgs        = 64
	DefaultMaxArgBytes    = 4 << 10
)

// DefaultLimits and MaxLimits are the built-in defaults and maximums of the
// run limits; each can be changed by configuration.
var (
	DefaultLimits = Limits{TimeMS: 5000, CPUTimeMS: 5000, MemoryMB: 256, Processes: 128,
		OutputKB: 64, FileSizeKB: 10 << 10, OpenFiles: 256}
	MaxLimits = Limits{TimeMS: 20000, CPUTimeMS: 20000, MemoryMB: 1024, Processes: 512,
		OutputKB: 1024, FileSizeKB: 64 << 10, OpenFiles: 4096}
)

// limitField describes one run limit: its JSON path, unit and minimum.
type limitField struct {
	path      string
	minimum   int
	requested func(*RequestLimits) *int
	value     func(*Limits) *int
}

var limitFields = []limitField{
	{"limits.time_ms", 1, func(r *RequestLimits) *int { return r.TimeMS }, func(l *Limits) *int { return &l.TimeMS }},
	{"limits.cpu_time_ms", 1, func(r *RequestLimits) *int { return r.CPUTimeMS }, func(l *Limits) *int { return &l.CPUTimeMS }},
	{"limits.memory_mb", 16, func(r *RequestLimits) *int { return r.MemoryMB }, func(l *Limits) *int { return &l.MemoryMB }},
	{"limits.processes", 8, func(r *RequestLimits) *int { return r.Processes }, func(l *Limits) *int { return &l.Processes }},
	{"limits.output_kb", 1, func(r *RequestLimits) *int { return r.OutputKB }, func(l *Limits) *int { return &l.OutputKB }},
	{"limits.file_size_kb", 1, func(r *RequestLimits) *int { return r.FileSizeKB }, func(l *Limits) *int { return &l.FileSizeKB }},
	{"limits.open_files", 16, func(r *RequestLimits) *int { return r.OpenFiles }, func(l *Limits) *int { return &l.OpenFiles }},
}

// limitNames returns the JSON names of the run limits.
func limitNames() []string {
	names := make([]string, len(limitFields))
	for i, f := range limitFields {
		names[i] = strings.TrimPrefix(f.path, "limits.")
	}
	return names
}

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
	for _, f := range limitFields {
		set(f.value(&p.Default), *f.value(&DefaultLimits))
		set(f.value(&p.Max), *f.value(&MaxLimits))
	}
	return p
}

// RequestError is a rejected request: the HTTP status, a machine-readable
// code, the offending field (a JSON path such as "limits.time_ms") and a
// message that states what is allowed.
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
	// The value is read whole first, because the decoder's error for an
	// unknown field names the field but not its object.
	var raw json.RawMessage
	if err := dec.Decode(&raw); err != nil {
		return nil, p.decodeError(err, nil)
	}
	fields := json.NewDecoder(bytes.NewReader(raw))
	fields.DisallowUnknownFields()
	var req Request
	if err := fields.Decode(&req); err != nil {
		return nil, p.decodeError(err, raw)
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

// decodeError converts a decoding error into a request error. raw is the
// JSON value when it was read whole, and nil otherwise.
func (p Policy) decodeError(err error, raw json.RawMessage) *RequestError {
	if e := p.bodyTooLarge(err); e != nil {
		return e
	}
	var typeErr *json.UnmarshalTypeError
	var syntaxErr *json.SyntaxError
	switch {
	case errors.As(err, &typeErr) && typeErr.Field == "":
		return &RequestError{
			Status:  http.StatusBadRequest,
			Code:    "malformed_json",
			Message: "the body must be a JSON object with language and source, not a JSON " + typeErr.Value,
		}
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
		if isLimitsField(raw, name) {
			return &RequestError{
				Status: http.StatusBadRequest,
				Code:   "unknown_field",
				Field:  "limits." + name,
				Message: fmt.Sprintf("unknown field %q; allowed limits are %s",
					"limits."+name, strings.Join(limitNames(), ", ")),
			}
		}
		return &RequestError{
			Status: http.StatusBadRequest,
			Code:   "unknown_field",
			Field:  name,
			Message: fmt.Sprintf("unknown field %q; allowed fields are language, source, stdin, args and limits (%s)",
				name, strings.Join(limitNames(), ", ")),
		}
	default:
		return &RequestError{
			Status:  http.StatusBadRequest,
			Code:    "malformed_json",
			Message: "the body is not a valid request: " + err.Error(),
		}
	}
}

// isLimitsField reports whether the unknown field name is in the limits
// object of the request rather than at its top level. Request has no other
// nested object.
func isLimitsField(raw json.RawMessage, name string) bool {
	var top map[string]json.RawMessage
	if raw == nil || json.Unmarshal(raw, &top) != nil {
		return false
	}
	if _, ok := top[name]; ok {
		return false
	}
	var limits map[string]json.RawMessage
	if json.Unmarshal(top["limits"], &limits) != nil {
		return false
	}
	_, ok := limits[name]
	return ok
}

// describeField returns the type and range a field takes, for error messages.
func (p Policy) describeField(field string) string {
	switch field {
	case "language", "source", "stdin":
		return "a string"
	case "args":
		return "an array of strings"
	case "limits":
		return "an object of integer limits"
	}
	for _, f := range limitFields {
		if f.path == field {
			return fmt.Sprintf("an integer from %d to %d", f.minimum, *f.value(&p.Max))
		}
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
	limits := p.Default
	if lang.Limits.TimeMS > 0 {
		limits.TimeMS = min(lang.Limits.TimeMS, p.Max.TimeMS)
		limits.CPUTimeMS = min(max(limits.CPUTimeMS, lang.Limits.TimeMS), p.Max.CPUTimeMS)
	}
	if lang.Limits.MemoryMB > 0 {
		limits.MemoryMB = min(lang.Limits.MemoryMB, p.Max.MemoryMB)
	}
	if requested == nil {
		return limits, nil
	}
	for _, f := range limitFields {
		v := f.requested(requested)
		if v == nil {
			continue
		}
		if maximum := *f.value(&p.Max); *v < f.minimum || *v > maximum {
			return Limits{}, invalidField(f.path, "%s must be an integer from %d to %d, not %d",
				f.path, f.minimum, maximum, *v)
		}
		*f.value(&limits) = *v
	}
	// A request that raises only the wall-clock limit means its program may
	// compute that long, so the CPU limit follows.
	if requested.TimeMS != nil && requested.CPUTimeMS == nil {
		limits.CPUTimeMS = min(limits.TimeMS, p.Max.CPUTimeMS)
	}
	return limits, nil
}

// IsJSONContentType reports whether a Content-Type header names JSON, with
// or without parameters such as charset.
func IsJSONContentType(header string) bool {
	mediaType, _, _ := strings.Cut(header, ";")
	return strings.EqualFold(strings.TrimSpace(mediaType), "application/json")
}
