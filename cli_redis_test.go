//go:build redis

package main

import (
	"slices"
	"testing"
)

// cliStore is the test Redis, and the environment that names it.
func cliStore(t *testing.T) (store, map[string]string) {
	t.Helper()
	return openTestRedis(t), map[string]string{"BATON_REDIS": needServer(t, "BATON_TEST_REDIS")}
}

// otherStoreArgs name the store of the other build.
func otherStoreArgs() []string { return []string{"-lease-table", "baton-leases"} }

// readmeStoreArgs drops README's DynamoDB flags: this build's store comes
// from BATON_REDIS in env.
func readmeStoreArgs(args []string, _ map[string]string) []string {
	for i := 0; i < len(args); i++ {
		switch args[i] {
		case "-lease-table":
			args = slices.Delete(args, i, i+2)
			i--
		case "-create-table":
			args = slices.Delete(args, i, i+1)
			i--
		}
	}
	return args
}

// tableExists: Redis has no tables.
func tableExists(*testing.T, string) bool { return false }
