//go:build redis

package main

// storeBuild is the lease store this binary was built with (lease_redis.go).
const storeBuild = "redis"
