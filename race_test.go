//go:build race

package main

// raceEnabled: the tests run with -race, so the herald binary they start
// is built with it too, from what compiling them cached.
const raceEnabled = true
