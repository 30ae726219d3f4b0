//go:build race

package sim

// raceEnabled shortens the simulation under the race detector, which slows
// the bbolt-heavy loop ~10x; the engine's concurrency is covered by the
// orchestrator package's own race test.
const raceEnabled = true
