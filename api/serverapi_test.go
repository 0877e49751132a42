package api

import "testing"

// A key is valid only when it is one of the configured keys, exactly; a
// missing key is never valid, nor is any key when none is configured.
func TestAPIKeys(t *testing.T) {
	const a, b = "key-a-0123456789abcdef0123456789abcdef", "key-b-0123456789abcdef0123456789abcdef"
	tests := []struct {
		name string
		keys []string
		key  string
		want bool
	}{
		{"the first of two", []string{a, b}, a, true},
		{"the second of two", []string{a, b}, b, true},
		{"missing", []string{a, b}, "", false},
		{"wrong", []string{a, b}, "key-c-0123456789abcdef0123456789abcdef", false},
		{"a prefix", []string{a, b}, a[:len(a)-1], false},
		{"longer", []string{a, b}, a + "x", false},
		{"other case", []string{a}, "KEY-A-0123456789ABCDEF0123456789ABCDEF", false},
		{"none configured, none given", nil, "", false},
		{"none configured", nil, a, false},
	}
	for _, tt := range tests {
		if got := newAPIKeys(tt.keys).valid(tt.key); got != tt.want {
			t.Errorf("%s: valid(%q) = %v; want %v", tt.name, tt.key, got, tt.want)
		}
	}
}

// A room id chosen by the app goes in paths: a safe alphabet only.
func TestCheckRoomID(t *testing.T) {
	for id, ok := range map[string]bool{
		"order-1234": true, "a": true, "Org.team:support_1": true, "r_abc": true,
		"": false, "-lead": false, ".x": false, "a/b": false, "a b": false, "a%20b": false, "é": false,
		string(make([]byte, 129)): false,
	} {
		if err := checkRoomID(id); (err == nil) != ok {
			t.Errorf("checkRoomID(%q) = %v; want ok %v", id, err, ok)
		}
	}
}
