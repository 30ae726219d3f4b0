//go:build race

package sim

// raceEnabled shortens the simulation under the race detector, which slows
// the loop (one bbolt commit per start and checkpoint) several times; the
// engine's concurrency is covered by the orchestrator package's own race
// test.
const raceEnabled = true
