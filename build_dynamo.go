//go:build !redis

package main

// storeBuild is the lease store this binary was built with (lease_dynamo.go).
const storeBuild = "dynamodb"
