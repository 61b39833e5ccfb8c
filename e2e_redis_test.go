//go:build e2e && redis

// e2e_redis_test.go gives the end-to-end tests the Redis lease store
// (BATON_TEST_REDIS); the lease group keeps each test's keys apart.

package main

import (
	"testing"
)

// e2eBuildTags are the tags the binary is built with for this store.
const e2eBuildTags = "lambda.norpc,redis"

// e2eLeaseStore is the environment that points the binary at Redis, and a
// store on the same server for the test to read the records.
func e2eLeaseStore(t *testing.T) (env []string, s store) {
	t.Helper()
	addr := needServer(t, "BATON_TEST_REDIS")
	return []string{"BATON_REDIS=" + addr}, openTestRedis(t)
}
