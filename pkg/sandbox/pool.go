package sandbox

import (
	"context"
	"sync"
	"time"

	"github.com/runbox/runbox/pkg/catalog"
)

// LabelPool marks an idle pool container with its language id. A container
// taken from the pool keeps the label but is renamed after its submission.
const LabelPool = "runbox.pool"

// pool keeps started, never used sandbox containers per language, so a
// submission skips container creation. Each container still runs exactly
// one submission and is then removed. A language gets a pool at its first
// use, and its idle containers are removed after idleTimeout without use.
type pool struct {
	runner      *Runner
	size        int
	idleTimeout time.Duration

	mu    sync.Mutex
	langs map[string]*languagePool

	ctx    context.Context
	cancel context.CancelFunc
	fills  sync.WaitGroup
}

// languagePool is the idle containers of one language, all created with
// the same memory and process limits.
type languagePool struct {
	lang      *catalog.Language
	idle      []*box
	memoryMB  int
	processes int
	lastUsed  time.Time
	filling   bool
}

func newPool(r *Runner, size int, idleTimeout time.Duration) *pool {
	ctx, cancel := context.WithCancel(context.Background())
	return &pool{runner: r, size: size, idleTimeout: idleTimeout,
		langs: make(map[string]*languagePool), ctx: ctx, cancel: cancel}
}

// acquire returns an idle container of the language set to the given
// limits, or nil when none is ready. It renames the container after the
// submission in the background, so a retry finds it, and closes the
// returned channel when that is done. The caller refills the pool after
// its run, so that creating the next container does not slow this one.
func (p *pool) acquire(ctx context.Context, lang *catalog.Language, jobID string, memoryMB, processes int) (*box, <-chan struct{}) {
	p.mu.Lock()
	lp := p.langs[lang.ID]
	if lp == nil {
		lp = &languagePool{lang: lang, memoryMB: memoryMB, processes: processes}
		p.langs[lang.ID] = lp
	}
	lp.lastUsed = time.Now()
	sameLimits := memoryMB == lp.memoryMB && processes == lp.processes
	var b *box
	var dead []*box
	// The oldest container goes first, so no idle container ages while the
	// language is in use.
	for len(lp.idle) > 0 && (sameLimits || p.runner.canUpdate()) {
		b, lp.idle = lp.idle[0], lp.idle[1:]
		if b.waiting() {
			break
		}
		dead, b = append(dead, b), nil
	}
	p.mu.Unlock()
	for _, d := range dead {
		p.runner.log.Warn("removing pool container that stopped while idle", "container", shortID(d.id),
			"language", lang.ID)
		d.close()
		p.runner.removeLater(d.id, "")
	}
	if b == nil {
		return nil, nil
	}
	if !sameLimits {
		if err := p.runner.setLimits(ctx, b.id, memoryMB, processes); err != nil {
			p.runner.log.Warn("set limits of pool container failed, starting a new container", "container", shortID(b.id),
				"language", lang.ID, "error", err)
			b.close()
			p.runner.removeLater(b.id, jobID)
			return nil, nil
		}
	}
	renamed := make(chan struct{})
	go func() {
		defer close(renamed)
		err := p.runner.docker.ContainerRename(context.WithoutCancel(ctx), b.id, submissionContainerName(jobID))
		if err != nil {
			p.runner.log.Warn("rename pool container after its submission failed", "container", shortID(b.id),
				"submission", jobID, "error", err)
		}
	}()
	return b, renamed
}

// refill tops up a language's idle containers in the background, one
// filler per language at a time.
func (p *pool) refill(langID string) {
	p.mu.Lock()
	lp := p.langs[langID]
	if lp.filling || len(lp.idle) >= p.size || p.ctx.Err() != nil {
		p.mu.Unlock()
		return
	}
	lp.filling = true
	p.fills.Add(1)
	p.mu.Unlock()
	go func() {
		defer p.fills.Done()
		defer func() {
			p.mu.Lock()
			lp.filling = false
			p.mu.Unlock()
		}()
		for {
			p.mu.Lock()
			full := len(lp.idle) >= p.size
			p.mu.Unlock()
			if full || p.ctx.Err() != nil {
				return
			}
			// A cancelled create can leave a container that the engine made
			// but never reported, so closing the pool does not cancel the
			// create. close waits for it instead, and the check below
			// removes the new container.
			createCtx, cancel := context.WithTimeout(context.Background(), startTimeout)
			b, err := p.runner.startContainer(createCtx, "", lp.lang, lp.memoryMB, lp.processes)
			cancel()
			if err != nil {
				if p.ctx.Err() == nil {
					p.runner.log.Warn("fill container pool", "language", langID, "error", err)
				}
				return
			}
			p.mu.Lock()
			if p.ctx.Err() != nil {
				p.mu.Unlock()
				b.close()
				p.runner.removeLater(b.id, "")
				return
			}
			lp.idle = append(lp.idle, b)
			p.mu.Unlock()
		}
	}()
}

// trim removes the idle containers of languages unused for idleTimeout.
func (p *pool) trim(now time.Time) {
	p.mu.Lock()
	var stale []*box
	for _, lp := range p.langs {
		if now.Sub(lp.lastUsed) >= p.idleTimeout && !lp.filling {
			stale = append(stale, lp.idle...)
			lp.idle = nil
		}
	}
	p.mu.Unlock()
	for _, b := range stale {
		b.close()
		p.runner.removeLater(b.id, "")
	}
}

// owns reports whether the container is idle in this pool.
func (p *pool) owns(id string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, lp := range p.langs {
		for _, idle := range lp.idle {
			if idle.id == id {
				return true
			}
		}
	}
	return false
}

// close stops refilling and removes every idle container.
func (p *pool) close() {
	p.cancel()
	p.fills.Wait()
	p.trim(time.Now().Add(p.idleTimeout + time.Hour))
}
