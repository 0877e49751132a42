//go:build !race

package main

// raceEnabled: the tests (benchmarks) run without -race, and so does the
// herald binary they start.
const raceEnabled = false
