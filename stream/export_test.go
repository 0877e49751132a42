package stream

// NewTestLog gives the package's external tests an in-memory log, which is
// also its membership (see memLog): no one is a member of any room.
func NewTestLog() interface {
	Log
	Membership
} {
	return newMemLog()
}
