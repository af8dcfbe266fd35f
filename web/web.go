// Package web serves the playground page embedded in the API binary. The
// files under static are served unchanged because the page has no build step.
package web

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"time"
)

//go:embed static
var static embed.FS

// cacheControl lets browsers reuse a file for five minutes before they
// revalidate it with its ETag. The file names contain no content hash, so
// browsers pick up a new release within that time.
const cacheControl = "public, max-age=300"

// contentSecurityPolicy allows only the page's own files and API requests
// to the same origin. The page has no inline scripts or styles.
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; " +
	"img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// contentTypes maps the extensions of the embedded files to their media
// types. It is fixed here because mime.TypeByExtension also reads the
// host's mime.types, which differs between systems.
var contentTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".svg":  "image/svg+xml",
	".json": "application/json",
	".txt":  "text/plain; charset=utf-8",
}

// file is one embedded file with the header values it is served with.
type file struct {
	content     string
	contentType string
	etag        string
}

// Handler returns a handler that serves the embedded files. "/" serves
// index.html, and any other path serves the file of that name. It accepts
// GET and HEAD, and responds with 404 to unknown paths and 405 to other
// methods.
func Handler() http.Handler {
	files, err := loadFiles()
	if err != nil {
		// The files are compiled into the binary, so this is a build defect.
		panic("web: read embedded files: " + err.Error())
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed: the page accepts GET and HEAD", http.StatusMethodNotAllowed)
			return
		}

		name := strings.TrimPrefix(path.Clean("/"+r.URL.Path), "/")
		if name == "" {
			name = "index.html"
		}
		f, ok := files[name]
		if !ok {
			http.NotFound(w, r)
			return
		}

		header := w.Header()
		header.Set("Content-Type", f.contentType)
		header.Set("Cache-Control", cacheControl)
		header.Set("ETag", f.etag)
		header.Set("X-Content-Type-Options", "nosniff")
		if strings.HasPrefix(f.contentType, "text/html") {
			header.Set("Content-Security-Policy", contentSecurityPolicy)
			header.Set("Referrer-Policy", "no-referrer")
		}

		// ServeContent returns 304 for a matching If-None-Match and serves
		// Range requests.
		http.ServeContent(w, r, name, time.Time{}, strings.NewReader(f.content))
	})
}

// loadFiles reads every embedded file with a known extension, keyed by its
// path below static.
func loadFiles() (map[string]file, error) {
	root, err := fs.Sub(static, "static")
	if err != nil {
		return nil, err
	}
	files := make(map[string]file)
	err = fs.WalkDir(root, ".", func(name string, entry fs.DirEntry, err error) error {
		if err != nil || entry.IsDir() {
			return err
		}
		contentType, known := contentTypes[path.Ext(name)]
		if !known {
			return nil
		}
		content, err := fs.ReadFile(root, name)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(content)
		files[name] = file{
			content:     string(content),
			contentType: contentType,
			etag:        `"` + hex.EncodeToString(sum[:8]) + `"`,
		}
		return nil
	})
	return files, err
}
