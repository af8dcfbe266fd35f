// Package catalog loads the language catalogue, one declarative YAML file.
// For each language it names the image, the source file name, the compile
// and run commands, and the sample the web page offers.
//
// The file is embedded in the binaries (languages.yaml beside this file) and
// can be replaced at run time through RUNBOX_LANGUAGES_FILE. Go code never
// branches on a language id.
package catalog

import (
	_ "embed"
	"fmt"
	"os"
	"path"
	"regexp"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"
)

//go:embed languages.yaml
var embedded []byte

// Language describes how one language is compiled and run in its image.
type Language struct {
	// ID is the stable name clients send, such as "python" or "cpp".
	ID string `yaml:"id" json:"id"`
	// Name is the display name, such as "C++".
	Name string `yaml:"name" json:"name"`
	// Image is the Docker image, built by `make images` from
	// deployments/images/<id>/Dockerfile.
	Image string `yaml:"image" json:"-"`
	// SourceFile is the file name the source is written to inside the work
	// directory, such as "main.py" or "Main.java".
	SourceFile string `yaml:"source_file" json:"-"`
	// Compile is an optional sh command run in the work directory after the
	// source is written. A non-zero exit is a compile error.
	Compile string `yaml:"compile" json:"-"`
	// Run is the sh command that starts the program. The program arguments
	// are appended as separate words, never parsed by a shell.
	Run string `yaml:"run" json:"-"`
	// Version is an sh command that prints the toolchain version.
	Version string `yaml:"version" json:"-"`
	// VersionPattern, when set, is a regular expression whose first group
	// (or whole match) is taken from the output of Version.
	VersionPattern string `yaml:"version_pattern" json:"-"`
	// Env lists NAME=value variables set for the compile and run steps, such
	// as PYTHONUNBUFFERED=1, so output written before a kill is not lost
	// in a buffer.
	Env []string `yaml:"env" json:"-"`
	// Limits overrides the configured default limits for this language.
	Limits Limits `yaml:"limits" json:"-"`
	// Sample is the program the web page shows for this language. It reads
	// one line from stdin and greets it, and the worker's self-test runs it.
	Sample string `yaml:"sample" json:"sample"`
	// Extension is the usual file extension without the dot, used by the
	// page for syntax hints and by tests to find programs.
	Extension string `yaml:"extension" json:"extension"`
}

// Limits are per-language overrides; a zero field keeps the default.
type Limits struct {
	TimeMS          int `yaml:"time_ms"`
	MemoryMB        int `yaml:"memory_mb"`
	CompileTimeMS   int `yaml:"compile_time_ms"`
	CompileMemoryMB int `yaml:"compile_memory_mb"`
}

// Catalog is the loaded, validated set of languages.
type Catalog struct {
	languages []Language
	byID      map[string]*Language
}

type document struct {
	Languages []Language `yaml:"languages"`
}

var idPattern = regexp.MustCompile(`^[a-z][a-z0-9_]{0,31}$`)

// Load reads the catalogue named by RUNBOX_LANGUAGES_FILE, or the embedded
// one when the variable is empty.
func Load() (*Catalog, error) {
	file := os.Getenv("RUNBOX_LANGUAGES_FILE")
	if file == "" {
		return Parse(embedded)
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("read language catalogue: %w", err)
	}
	return Parse(data)
}

// Embedded returns the catalogue compiled into the binary.
func Embedded() *Catalog {
	c, err := Parse(embedded)
	if err != nil {
		panic("catalog: embedded languages.yaml is invalid: " + err.Error())
	}
	return c
}

// Parse decodes and validates a catalogue document.
func Parse(data []byte) (*Catalog, error) {
	var doc document
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("parse language catalogue: %w", err)
	}
	c := &Catalog{byID: make(map[string]*Language)}
	for i := range doc.Languages {
		lang := doc.Languages[i]
		if err := lang.validate(); err != nil {
			return nil, fmt.Errorf("language catalogue entry %d: %w", i+1, err)
		}
		if _, dup := c.byID[lang.ID]; dup {
			return nil, fmt.Errorf("language catalogue: duplicate id %q", lang.ID)
		}
		c.languages = append(c.languages, lang)
		c.byID[lang.ID] = &c.languages[len(c.languages)-1]
	}
	if len(c.languages) == 0 {
		return nil, fmt.Errorf("language catalogue: no languages")
	}
	sort.Slice(c.languages, func(i, j int) bool {
		return c.languages[i].ID < c.languages[j].ID
	})
	for i := range c.languages {
		c.byID[c.languages[i].ID] = &c.languages[i]
	}
	return c, nil
}

func (l *Language) validate() error {
	if !idPattern.MatchString(l.ID) {
		return fmt.Errorf("id %q must match %s", l.ID, idPattern)
	}
	missing := []string{}
	for field, value := range map[string]string{
		"name": l.Name, "image": l.Image, "source_file": l.SourceFile,
		"run": l.Run, "version": l.Version, "sample": l.Sample,
	} {
		if strings.TrimSpace(value) == "" {
			missing = append(missing, field)
		}
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		return fmt.Errorf("%s: missing %s", l.ID, strings.Join(missing, ", "))
	}
	if l.SourceFile != path.Base(l.SourceFile) || strings.ContainsAny(l.SourceFile, "'\"$`\\ ") {
		return fmt.Errorf("%s: source_file %q must be a plain file name", l.ID, l.SourceFile)
	}
	if l.VersionPattern != "" {
		if _, err := regexp.Compile(l.VersionPattern); err != nil {
			return fmt.Errorf("%s: version_pattern: %w", l.ID, err)
		}
	}
	return nil
}

// Get returns the language with the given id.
func (c *Catalog) Get(id string) (*Language, bool) {
	lang, ok := c.byID[id]
	return lang, ok
}

// All returns every language, sorted by id.
func (c *Catalog) All() []Language {
	return append([]Language(nil), c.languages...)
}

// IDs returns every language id, sorted.
func (c *Catalog) IDs() []string {
	ids := make([]string, len(c.languages))
	for i, lang := range c.languages {
		ids[i] = lang.ID
	}
	return ids
}

// ParseVersion extracts the version from the output of the version command:
// the first group of VersionPattern, its whole match, or else the first
// non-empty line.
func (l *Language) ParseVersion(output string) string {
	if l.VersionPattern != "" {
		m := regexp.MustCompile(l.VersionPattern).FindStringSubmatch(output)
		switch {
		case len(m) > 1:
			return strings.TrimSpace(m[1])
		case len(m) == 1:
			return strings.TrimSpace(m[0])
		}
	}
	for _, line := range strings.Split(output, "\n") {
		if line = strings.TrimSpace(line); line != "" {
			return line
		}
	}
	return ""
}
