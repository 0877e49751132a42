//go:build !unix

package main

import "os"

// flock does nothing where there is no flock(2): the database is not
// locked there, and two servers on one data dir are not detected.
func flock(*os.File) error { return nil }
