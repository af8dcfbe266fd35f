package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
)

// chromiumPath is the browser's path in Debian's chromium package.
const chromiumPath = "/usr/bin/chromium"

// browserRunTimeout bounds one run on the page, from pressing Run until
// the status shows done or failed.
const browserRunTimeout = 2 * time.Minute

// browser is a headless Chromium tab and the JavaScript exceptions that the
// page did not catch.
type browser struct {
	ctx        context.Context
	mu         sync.Mutex
	exceptions []string
}

// startBrowser starts headless Chromium with a fresh profile and closes it
// when the test ends. When the test has failed by then, it first saves a
// screenshot of the page and logs its path.
func startBrowser(t *testing.T) *browser {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Fatalf("chromium is not installed at %s, and the browser test needs it: "+
			"install it with `apt-get install -y chromium` (`make test` does): %v", chromiumPath, err)
	}
	profile, err := os.MkdirTemp("", "runbox-browser-profile-*")
	if err != nil {
		t.Fatalf("create chromium profile dir: %v", err)
	}

	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), chromiumOptions(profile)...)
	ctx, cancelTab := chromedp.NewContext(allocCtx)
	stop := func() {
		cancelTab()
		cancelAlloc()
		os.RemoveAll(profile)
	}
	// The first action starts the browser, so it gets no timeout, because a
	// timeout on that context would stop the whole browser when it ends.
	if err := chromedp.Do(ctx); err != nil {
		stop()
		t.Fatalf("start %s: %v", chromiumPath, err)
	}

	b := &browser{ctx: ctx}
	b.collectExceptions()
	t.Cleanup(func() {
		if t.Failed() {
			b.saveScreenshot(t)
		}
		stop()
	})
	return b
}

// chromiumOptions returns the flags for a headless browser that uses the
// profile directory, with background networking, component updates, sync
// and QUIC turned off.
func chromiumOptions(profile string) []chromedp.ExecAllocatorOption {
	return append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(profile),
		chromedp.WindowSize(1280, 900),
	)
}

// collectExceptions records the page's uncaught JavaScript exceptions
// until the browser closes.
func (b *browser) collectExceptions() {
	exceptions := chromedp.Events(b.ctx, runtime.ExceptionThrown)
	go func() {
		for event, err := range exceptions {
			if err != nil {
				return
			}
			b.mu.Lock()
			b.exceptions = append(b.exceptions, exceptionText(event))
			b.mu.Unlock()
		}
	}()
}

func exceptionText(event runtime.EventExceptionThrown) string {
	details := event.ExceptionDetails
	if details == nil {
		return "an exception without details"
	}
	text := details.Text
	if details.Exception != nil && details.Exception.Description != "" {
		text += " " + details.Exception.Description
	}
	return fmt.Sprintf("%s (%s:%d:%d)", text, details.URL, details.LineNumber+1, details.ColumnNumber+1)
}

// uncaughtExceptions returns the page's uncaught JavaScript exceptions so
// far.
func (b *browser) uncaughtExceptions() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.exceptions)
}

func (b *browser) saveScreenshot(t *testing.T) {
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	image, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Logf("take a screenshot of the failed page: %v", err)
		return
	}
	dir, err := os.MkdirTemp("", "runbox-browser-failure-*")
	if err != nil {
		t.Logf("create screenshot dir: %v", err)
		return
	}
	path := filepath.Join(dir, strings.ReplaceAll(t.Name(), "/", "_")+".png")
	if err := os.WriteFile(path, image, 0o644); err != nil {
		t.Logf("write screenshot: %v", err)
		return
	}
	t.Logf("screenshot of the page at the failure: %s", path)
}

// do runs the actions of one step with a timeout and fails the test on an
// error.
func (b *browser) do(t *testing.T, step string, timeout time.Duration, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, timeout)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		t.Fatalf("%s: %v", step, err)
	}
}

// evaluate runs a JavaScript expression in the page and decodes its value.
func evaluate[T any](t *testing.T, b *browser, expression string) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	value, err := chromedp.Run(ctx, chromedp.Evaluate[T](expression))
	if err != nil {
		t.Fatalf("evaluate %s: %v", expression, err)
	}
	return value
}

// openPlayground loads the page from the API and waits until the language
// list has loaded, which enables the Run button.
func (b *browser) openPlayground(t *testing.T, baseURL string) {
	t.Helper()
	b.do(t, "open the playground at "+baseURL, 30*time.Second,
		chromedp.Navigate(baseURL+"/"),
		chromedp.WaitEnabled(chromedp.ID("run")),
	)
}

// selectLanguage picks the language as a user does, which fires the
// picker's change event.
func (b *browser) selectLanguage(t *testing.T, id string) {
	t.Helper()
	options := evaluate[[]string](t, b,
		`[...document.querySelectorAll("#language option:not([disabled])")].map(o => o.value)`)
	if !slices.Contains(options, id) {
		t.Fatalf("the language picker offers %v, want it to offer %s", options, id)
	}
	b.do(t, "select language "+id, 10*time.Second,
		chromedp.SetValue(chromedp.ID("language"), id),
		chromedp.Evaluate[chromedp.Void](
			`document.getElementById("language").dispatchEvent(new Event("change", {bubbles: true}))`),
	)
	if got := evaluate[string](t, b, `document.getElementById("language").value`); got != id {
		t.Fatalf("language picker shows %q after selecting %q", got, id)
	}
}

// replaceSource puts the program into the editor. It sets the value and
// fires an input event instead of typing, because the CDP Enter key sends
// a char event after the keydown that the editor handles, and that char
// event would insert a second line break.
func (b *browser) replaceSource(t *testing.T, source string) {
	t.Helper()
	literal, err := json.Marshal(source)
	if err != nil {
		t.Fatalf("encode source: %v", err)
	}
	b.do(t, "replace the source", 10*time.Second,
		chromedp.Focus(chromedp.ID("source")),
		chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`(() => {
			const editor = document.getElementById("source");
			editor.value = %s;
			editor.dispatchEvent(new Event("input", {bubbles: true}));
		})()`, literal)),
	)
}

// typeStdin replaces the text of the stdin box by typing over its selected
// content with key events.
func (b *browser) typeStdin(t *testing.T, text string) {
	t.Helper()
	// NOTE: chromedp v0.23.1 drops an empty string from the arguments of
	// its CDP call, so chromedp.SetValue(sel, "") sets the value
	// "undefined" and fails with "could not set value on node".
	b.do(t, "type stdin", 10*time.Second,
		chromedp.Focus(chromedp.ID("stdin")),
		chromedp.Evaluate[chromedp.Void](`document.getElementById("stdin").select()`),
		chromedp.KeyEvent(text),
	)
	if got := evaluate[string](t, b, `document.getElementById("stdin").value`); got != text {
		t.Fatalf("stdin box contains %q after typing %q", got, text)
	}
}

// recordStatuses makes the page log every state of #status together with
// whether the Run button was disabled at that moment.
func (b *browser) recordStatuses(t *testing.T) {
	t.Helper()
	evaluate[chromedp.Void](t, b, `(() => {
		window.statusLog = [];
		const status = document.getElementById("status");
		const run = document.getElementById("run");
		new MutationObserver(() => {
			window.statusLog.push({state: status.dataset.state, text: status.textContent, runDisabled: run.disabled});
		}).observe(status, {attributes: true, childList: true, characterData: true, subtree: true});
	})()`)
}

// statusEntry is one state that #status showed during a run.
type statusEntry struct {
	State       string `json:"state"`
	Text        string `json:"text"`
	RunDisabled bool   `json:"runDisabled"`
}

// pageResult is what the output pane shows after a run.
type pageResult struct {
	State         string `json:"state"`
	Status        string `json:"status"`
	Error         string `json:"error"`
	Verdict       string `json:"verdict"`
	VerdictLabel  string `json:"verdictLabel"`
	VerdictShown  bool   `json:"verdictShown"`
	Message       string `json:"message"`
	Stdout        string `json:"stdout"`
	Stderr        string `json:"stderr"`
	ExitCode      string `json:"exitCode"`
	Time          string `json:"time"`
	Memory        string `json:"memory"`
	CompileOutput string `json:"compileOutput"`
	RunDisabled   bool   `json:"runDisabled"`
}

func (r pageResult) String() string {
	return fmt.Sprintf("status %q (%s), error %q, verdict %q %q, message %q, exit code %q, time %q, memory %q\n"+
		"stdout %q\nstderr %q\ncompile output %q",
		r.Status, r.State, r.Error, r.Verdict, r.VerdictLabel, r.Message, r.ExitCode, r.Time, r.Memory,
		r.Stdout, r.Stderr, r.CompileOutput)
}

// waitResult waits until the status shows done or failed and returns what
// the page shows.
func (b *browser) waitResult(t *testing.T) pageResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, browserRunTimeout+10*time.Second)
	defer cancel()
	_, err := chromedp.Run(ctx, chromedp.Poll[bool](
		`["done", "error"].includes(document.getElementById("status").dataset.state)`,
		chromedp.WithPollingInterval(100*time.Millisecond),
		chromedp.WithPollingTimeout(browserRunTimeout)))
	if err != nil {
		status := evaluate[string](t, b, `document.getElementById("status").textContent`)
		t.Fatalf("the page did not finish the run within %s (status %q): %v", browserRunTimeout, status, err)
	}
	return evaluate[pageResult](t, b, `(() => {
		const text = (id) => document.getElementById(id).textContent;
		const verdict = document.getElementById("verdict");
		const error = document.getElementById("error");
		return {
			state: document.getElementById("status").dataset.state,
			status: text("status"),
			error: error.hidden ? "" : error.innerText,
			verdict: verdict.dataset.verdict,
			verdictLabel: verdict.textContent,
			verdictShown: verdict.checkVisibility(),
			message: text("message"),
			stdout: text("stdout"),
			stderr: text("stderr"),
			exitCode: text("exit-code"),
			time: text("time"),
			memory: text("memory"),
			compileOutput: text("compile-output"),
			runDisabled: document.getElementById("run").disabled,
		};
	})()`)
}

func (b *browser) statusLog(t *testing.T) []statusEntry {
	t.Helper()
	return evaluate[[]statusEntry](t, b, `window.statusLog`)
}

// checkNoExceptions fails the test if the page threw an uncaught
// JavaScript exception.
func (b *browser) checkNoExceptions(t *testing.T) {
	t.Helper()
	for _, exception := range b.uncaughtExceptions() {
		t.Errorf("uncaught JavaScript exception in the page: %s", exception)
	}
}

var timePattern = regexp.MustCompile(`^[0-9][0-9,]* ms$`)

var memoryPattern = regexp.MustCompile(`^([0-9]+ KiB|[0-9]+\.[0-9] MiB)$`)

func TestBrowserRunsPythonWithCtrlEnter(t *testing.T) {
	s := startStack(t, stackOptions{})
	b := startBrowser(t)
	b.openPlayground(t, s.URL)
	b.selectLanguage(t, "python")
	b.replaceSource(t, "print(\"hello from the browser\")\nline = input()\nprint(\"stdin: \" + line)\n")
	b.typeStdin(t, "typed in chromium")
	b.recordStatuses(t)

	b.do(t, "press Ctrl+Enter in the editor", 10*time.Second,
		chromedp.Focus(chromedp.ID("source")),
		chromedp.KeyEvent(kb.Enter, chromedp.KeyModifiers(kb.ModifierCtrl)),
	)
	result := b.waitResult(t)

	if result.State != "done" {
		t.Fatalf("the run ended in state %q, want done\n%s", result.State, result)
	}
	if result.Verdict != "ok" {
		t.Errorf("verdict = %q, want ok\n%s", result.Verdict, result)
	}
	if result.VerdictLabel != "OK" {
		t.Errorf("verdict badge reads %q, want OK", result.VerdictLabel)
	}
	if !result.VerdictShown {
		t.Error("the verdict badge is not visible")
	}
	if want := "hello from the browser\nstdin: typed in chromium\n"; result.Stdout != want {
		t.Errorf("stdout pane = %q, want %q", result.Stdout, want)
	}
	if result.Stderr != "" {
		t.Errorf("stderr pane = %q, want it empty", result.Stderr)
	}
	if result.ExitCode != "0" {
		t.Errorf("exit code = %q, want 0", result.ExitCode)
	}
	if !timePattern.MatchString(result.Time) {
		t.Errorf("time = %q, want a number of milliseconds such as \"42 ms\"", result.Time)
	}
	if !memoryPattern.MatchString(result.Memory) {
		t.Errorf("memory = %q, want a size such as \"5120 KiB\" or \"12.5 MiB\"", result.Memory)
	}
	if result.RunDisabled {
		t.Error("the Run button is still disabled after the run")
	}
	// Ctrl+Enter is a shortcut only: it must not add a line to the program.
	if got := evaluate[string](t, b, `document.getElementById("source").value`); strings.Count(got, "\n") != 3 {
		t.Errorf("source after Ctrl+Enter = %q, want the 3 lines unchanged", got)
	}

	log := b.statusLog(t)
	queued := slices.IndexFunc(log, func(e statusEntry) bool { return e.State == "queued" })
	if queued < 0 {
		t.Errorf("the status never showed queued; it showed %+v", log)
	} else if !log[queued].RunDisabled {
		t.Errorf("the Run button was enabled while the status showed %q", log[queued].Text)
	}
	b.checkNoExceptions(t)
}

func TestBrowserShowsPythonSyntaxError(t *testing.T) {
	s := startStack(t, stackOptions{})
	b := startBrowser(t)
	b.openPlayground(t, s.URL)
	b.selectLanguage(t, "python")
	b.replaceSource(t, "print(\"before the error\")\n\ndef broken(:\n    pass\n")

	b.do(t, "click Run", 10*time.Second, chromedp.Click(chromedp.ID("run")))
	result := b.waitResult(t)

	if result.State != "done" {
		t.Fatalf("the run ended in state %q, want done\n%s", result.State, result)
	}
	// Python has no compile step, so the interpreter reports the error
	// at run time. The check also accepts compile_error, which a catalogue
	// entry with a syntax check before the run would return.
	if result.Verdict != "runtime_error" && result.Verdict != "compile_error" {
		t.Errorf("verdict = %q, want runtime_error or compile_error\n%s", result.Verdict, result)
	}
	if result.VerdictLabel == "" || result.VerdictLabel == "OK" {
		t.Errorf("verdict badge reads %q, want an error label", result.VerdictLabel)
	}
	if diagnostics := result.Stderr + result.CompileOutput; !strings.Contains(diagnostics, "SyntaxError") {
		t.Errorf("neither stderr nor compile output mentions SyntaxError\n%s", result)
	}
	if result.Message == "" {
		t.Errorf("the page shows no message for verdict %q", result.Verdict)
	}
	if strings.Contains(result.Stdout, "before the error") {
		t.Errorf("stdout pane = %q, but a syntax error stops Python before it runs anything", result.Stdout)
	}
	b.checkNoExceptions(t)
}
