package eval

import (
	"fmt"
	"io"
	"math"
	"time"

	"github.com/schollz/progressbar/v3"
)

// etaModel estimates how long chunks take, from the protocol first and
// from the chunks already run as soon as there are some: the time per
// request differs a lot by runtime and by eviction rate (at E=1 every
// request waits for a worker to start).
type etaModel struct {
	o Options
	// perRequest is the learned time per request beyond the pause, by
	// runtime and rate class.
	perRequest map[string]time.Duration
}

// chunkOverhead is deploy, readiness, settle and removal of one run
// (about 2 s measured on two cores).
const chunkOverhead = 2 * time.Second

func newETAModel(o Options) *etaModel { return &etaModel{o: o, perRequest: map[string]time.Duration{}} }

func (m *etaModel) key(c Chunk) string {
	class := "warm"
	if c.Kind == KindRun && c.Rate == 1 {
		class = "e1"
	}
	if c.Kind == KindProbe {
		class = "probe"
	}
	return m.o.Runtimes[c.Benchmark] + "/" + class
}

// guess is the time per request beyond the pause before anything was
// measured (from smoke runs on two cores): at E=1 every request waits for
// the rest of a worker's start that the pause did not cover, most for a
// JVM.
func (m *etaModel) guess(c Chunk) time.Duration {
	switch {
	case c.Kind == KindProbe:
		return 500 * time.Millisecond // a deploy, a restore and a cold start per repetition, spread over its requests
	case c.Kind == KindRun && c.Rate == 1 && m.o.Runtimes[c.Benchmark] == "jvm":
		return 350 * time.Millisecond
	case c.Kind == KindRun && c.Rate == 1:
		return 100 * time.Millisecond
	}
	return 50 * time.Millisecond
}

// requests is how many requests a chunk sends.
func (m *etaModel) requests(c Chunk) int {
	if c.Kind == KindProbe {
		return m.o.ProbeReps * (c.Requests + 2)
	}
	return c.Requests
}

func (m *etaModel) perReq(c Chunk) time.Duration {
	d, ok := m.perRequest[m.key(c)]
	if !ok {
		d = m.guess(c)
	}
	return m.o.interval(c.Benchmark) + d
}

// estimate is the expected duration of chunk c.
func (m *etaModel) estimate(c Chunk) time.Duration {
	return chunkOverhead + time.Duration(m.requests(c))*m.perReq(c)
}

// learn folds a finished chunk's duration into the per-request estimate.
func (m *etaModel) learn(c Chunk, took time.Duration) {
	n := m.requests(c)
	if n == 0 {
		return
	}
	d := (took-chunkOverhead)/time.Duration(n) - m.o.interval(c.Benchmark)
	d = max(d, 0)
	k := m.key(c)
	if prev, ok := m.perRequest[k]; ok {
		d = (prev + d) / 2
	}
	m.perRequest[k] = d
}

// progress reports where a run of chunks is, with an ETA, as a bar on a
// terminal or as plain lines otherwise.
type progress struct {
	mode    ProgressMode
	out     io.Writer
	eta     *etaModel
	chunks  []Chunk
	current int
	sent    int // requests of the current chunk so far
	begin   time.Time
	chunkAt time.Time
	lastAt  time.Time
	bar     *progressbar.ProgressBar
	now     func() time.Time
}

func newProgress(o Options, chunks []Chunk) *progress {
	p := &progress{mode: o.Progress, out: o.Stdout, eta: newETAModel(o), chunks: chunks, now: time.Now}
	p.begin = p.now()
	if p.mode == ProgressBar && len(chunks) > 0 {
		total := 0
		for _, c := range chunks {
			total += p.eta.requests(c)
		}
		p.bar = progressbar.NewOptions(total,
			progressbar.OptionSetWriter(o.Stdout),
			progressbar.OptionSetWidth(30),
			progressbar.OptionShowCount(),
			progressbar.OptionSetPredictTime(false), // ours knows E=1 and the runtimes
			progressbar.OptionThrottle(250*time.Millisecond),
			progressbar.OptionSetRenderBlankState(true),
		)
	}
	return p
}

// remaining estimates the time left: the rest of the current chunk and
// every chunk after it.
func (p *progress) remaining() time.Duration {
	if p.current >= len(p.chunks) {
		return 0
	}
	c := p.chunks[p.current]
	left := p.eta.estimate(c) - time.Duration(p.sent)*p.eta.perReq(c)
	if el := p.now().Sub(p.chunkAt); left < 0 || el > p.eta.estimate(c) {
		left = 0
	}
	for _, c := range p.chunks[p.current+1:] {
		left += p.eta.estimate(c)
	}
	return left
}

// status is one line saying where the run is.
func (p *progress) status() string {
	done := p.current
	pct := 0.0
	if len(p.chunks) > 0 {
		el := p.now().Sub(p.begin)
		if total := el + p.remaining(); total > 0 {
			pct = 100 * float64(el) / float64(total)
		}
	}
	desc := ""
	if p.current < len(p.chunks) {
		c := p.chunks[p.current]
		desc = fmt.Sprintf(" %s, request %d/%d;", c, p.sent, p.eta.requests(c))
	}
	return fmt.Sprintf("eval: %3.0f%% [chunk %d/%d]%s elapsed %s, eta %s", math.Min(pct, 99), done+1, len(p.chunks), desc,
		round(p.now().Sub(p.begin)), round(p.remaining()))
}

func round(d time.Duration) time.Duration {
	if d > time.Minute {
		return d.Round(time.Second)
	}
	return d.Round(100 * time.Millisecond)
}

// startChunk marks chunk i as running.
func (p *progress) startChunk(i int) {
	p.current, p.sent = i, 0
	p.chunkAt = p.now()
	switch p.mode {
	case ProgressLines:
		p.lastAt = p.now()
		fmt.Fprintln(p.out, p.status())
	case ProgressBar:
		p.describe()
	}
}

func (p *progress) describe() {
	if p.bar == nil || p.current >= len(p.chunks) {
		return
	}
	p.bar.Describe(fmt.Sprintf("[%d/%d] %s | eta %s", p.current+1, len(p.chunks), p.chunks[p.current], round(p.remaining())))
}

// request counts one request sent.
func (p *progress) request() {
	p.sent++
	switch p.mode {
	case ProgressLines:
		if p.now().Sub(p.lastAt) >= 30*time.Second {
			p.lastAt = p.now()
			fmt.Fprintln(p.out, p.status())
		}
	case ProgressBar:
		p.describe()
		_ = p.bar.Add(1)
	}
}

// doneChunk learns from the finished chunk and prints its summary.
func (p *progress) doneChunk(summary string) {
	c := p.chunks[p.current]
	p.eta.learn(c, p.now().Sub(p.chunkAt))
	if p.bar != nil {
		// Catch up requests a probe or a failed run did not send.
		if n := p.eta.requests(c) - p.sent; n > 0 {
			_ = p.bar.Add(n)
		}
		_ = p.bar.Clear()
	}
	fmt.Fprintf(p.out, "eval: done %s in %s: %s\n", c, round(p.now().Sub(p.chunkAt)), summary)
}

// println prints a line without tearing the bar.
func (p *progress) println(format string, args ...any) {
	if p.bar != nil {
		_ = p.bar.Clear()
	}
	fmt.Fprintf(p.out, format+"\n", args...)
}

func (p *progress) finish() {
	if p.bar != nil {
		_ = p.bar.Finish()
		fmt.Fprintln(p.out)
	}
	p.current = len(p.chunks)
}

// estimateTotal is the expected duration of chunks, for the line printed
// before a run starts.
func estimateTotal(o Options, chunks []Chunk) time.Duration {
	m := newETAModel(o)
	var d time.Duration
	for _, c := range chunks {
		d += m.estimate(c)
	}
	return d
}
