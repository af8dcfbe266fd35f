package sandbox

import (
	"context"
	"sync"
	"time"

	"github.com/docker/docker/api/types/container"

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
	idle      []string
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
// limits, or "" when none is ready. The caller refills the pool after its
// run, so that creating the next container does not slow this one.
func (p *pool) acquire(ctx context.Context, lang *catalog.Language, jobID string, memoryMB, processes int) string {
	p.mu.Lock()
	lp := p.langs[lang.ID]
	if lp == nil {
		lp = &languagePool{lang: lang, memoryMB: memoryMB, processes: processes}
		p.langs[lang.ID] = lp
	}
	lp.lastUsed = time.Now()
	var id string
	// The oldest container goes first, so no idle container ages while the
	// language is in use.
	if len(lp.idle) > 0 {
		id, lp.idle = lp.idle[0], lp.idle[1:]
	}
	poolMemoryMB, poolProcesses := lp.memoryMB, lp.processes
	p.mu.Unlock()
	if id == "" {
		return ""
	}
	if err := p.prepare(ctx, id, jobID, memoryMB, processes, poolMemoryMB, poolProcesses); err != nil {
		p.runner.log.Warn("pool container unusable; using a new one", "container", shortID(id),
			"language", lang.ID, "error", err)
		p.runner.removeLater(id, jobID)
		return ""
	}
	return id
}

// prepare names the container after the submission, so a retry finds it,
// and sets the job's limits when they differ from the pool's.
func (p *pool) prepare(ctx context.Context, id, jobID string, memoryMB, processes, poolMemoryMB, poolProcesses int) error {
	if err := p.runner.docker.ContainerRename(ctx, id, submissionContainerName(jobID)); err != nil {
		return err
	}
	if memoryMB == poolMemoryMB && processes == poolProcesses {
		return nil
	}
	memory := int64(memoryMB) << 20
	pids := int64(processes + containerProcesses)
	resources := container.Resources{PidsLimit: &pids}
	if memoryMB != poolMemoryMB {
		resources.Memory, resources.MemorySwap = memory, memory
	}
	_, err := p.runner.docker.ContainerUpdate(ctx, id, container.UpdateConfig{Resources: resources})
	return err
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
			// A cancelled create can leave a container the engine made but
			// never named to us, so creation is not cancelled on close.
			// close waits for it instead, and the check below removes it.
			createCtx, cancel := context.WithTimeout(context.Background(), time.Minute)
			id, err := p.runner.startContainer(createCtx, "", lp.lang, lp.memoryMB, lp.processes)
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
				p.runner.removeLater(id, "")
				return
			}
			lp.idle = append(lp.idle, id)
			p.mu.Unlock()
		}
	}()
}

// trim removes the idle containers of languages unused for idleTimeout.
func (p *pool) trim(now time.Time) {
	p.mu.Lock()
	var stale []string
	for _, lp := range p.langs {
		if now.Sub(lp.lastUsed) >= p.idleTimeout && !lp.filling {
			stale = append(stale, lp.idle...)
			lp.idle = nil
		}
	}
	p.mu.Unlock()
	for _, id := range stale {
		p.runner.removeLater(id, "")
	}
}

// owns reports whether the container is idle in this pool.
func (p *pool) owns(id string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, lp := range p.langs {
		for _, idle := range lp.idle {
			if idle == id {
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
