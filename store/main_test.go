package store_test

import (
	"os"
	"testing"

	"github.com/heraldchat/herald/store/storetest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	storetest.StopShared()
	os.Exit(code)
}
