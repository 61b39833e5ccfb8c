// Package main is baton: a Kafka partition consumer for short-lived runtimes.
package main

import "time"

// config is everything baton reads from flags and the environment.
type config struct {
	LeaseTable   string        // DynamoDB table (-lease-table, BATON_LEASE_TABLE)
	CreateTable  bool          // create the DynamoDB table when missing (local runs)
	Redis        string        // Redis address host:port or redis:// URL (-redis, BATON_REDIS)
	StoreTimeout time.Duration // bound on one lease store call
}

const defaultStoreTimeout = 3 * time.Second

func main() {}
