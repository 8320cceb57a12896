/*
 * mosn-rs test accelerator: an OpenSSL 3 ENGINE (dynamic, loadable by path) whose "device" is a
 * pool of worker threads ("lanes"). RSA private encrypt/decrypt (a copy of RSA_PKCS1_OpenSSL()
 * with rsa_priv_enc/rsa_priv_dec replaced) and ECDSA signing (a copy of EC_KEY_OpenSSL() with
 * `sign` replaced) are queued to a lane, which computes them in software, then holds the lane for
 * the configured device latency and signals a per-operation eventfd.
 *
 * Inside an ASYNC_JOB (SSL_MODE_ASYNC) the eventfd is registered in the job's ASYNC_WAIT_CTX and
 * the job pauses (ASYNC_pause_job) until the lane is done; outside a job the caller blocks on the
 * eventfd (sync mode). Nothing here is fast or secure: it exists so CI can test offload without a
 * card. Built by tls-offload/build.rs (feature `openssl`) as libmosn_test_engine.so.
 *
 * Knobs (environment at bind time, or ENGINE ctrl commands at any time):
 *   MOSN_TEST_ENGINE_LATENCY_US / LATENCY_US  device time per operation (default 0)
 *   MOSN_TEST_ENGINE_LANES      / LANES       operations in parallel (default 64, max 1024)
 *   MOSN_TEST_ENGINE_FAIL_NEXT  / FAIL_NEXT   the next N operations fail (device error)
 *   POLL (external polling: counted), RESET_STATS
 * Counters (ENGINE_ctrl_cmd with p = long *): STAT_ASYNC (operations completed inside a paused
 * job), STAT_SYNC (operations the caller blocked for), STAT_FAILED, STAT_PAUSES, STAT_POLLS.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <openssl/async.h>
#include <openssl/ec.h>
#include <openssl/engine.h>
#include <openssl/rsa.h>

#define ENGINE_ID "mosn-test-accel"
#define MAX_LANES 1024

enum { OP_RSA_ENC, OP_RSA_DEC, OP_ECDSA };

enum {
    CMD_LATENCY_US = ENGINE_CMD_BASE,
    CMD_LANES,
    CMD_FAIL_NEXT,
    CMD_POLL,
    CMD_RESET,
    CMD_STAT_ASYNC,
    CMD_STAT_SYNC,
    CMD_STAT_FAILED,
    CMD_STAT_PAUSES,
    CMD_STAT_POLLS,
};

static const ENGINE_CMD_DEFN cmds[] = {
    {CMD_LATENCY_US, "LATENCY_US", "device latency per operation (us)", ENGINE_CMD_FLAG_NUMERIC},
    {CMD_LANES, "LANES", "operations the device runs in parallel", ENGINE_CMD_FLAG_NUMERIC},
    {CMD_FAIL_NEXT, "FAIL_NEXT", "fail the next N operations", ENGINE_CMD_FLAG_NUMERIC},
    {CMD_POLL, "POLL", "external poll (only counted)", ENGINE_CMD_FLAG_NO_INPUT},
    {CMD_RESET, "RESET_STATS", "zero the counters", ENGINE_CMD_FLAG_NO_INPUT},
    {CMD_STAT_ASYNC, "STAT_ASYNC", "ops completed in a paused job", ENGINE_CMD_FLAG_INTERNAL},
    {CMD_STAT_SYNC, "STAT_SYNC", "ops the caller blocked for", ENGINE_CMD_FLAG_INTERNAL},
    {CMD_STAT_FAILED, "STAT_FAILED", "ops failed by injection", ENGINE_CMD_FLAG_INTERNAL},
    {CMD_STAT_PAUSES, "STAT_PAUSES", "ASYNC_pause_job calls", ENGINE_CMD_FLAG_INTERNAL},
    {CMD_STAT_POLLS, "STAT_POLLS", "POLL commands", ENGINE_CMD_FLAG_INTERNAL},
    {0, NULL, NULL, 0},
};

/* One operation, shared by the caller and a lane: freed (and its eventfd closed) by whichever
 * of the two lets go last, so a lane never writes to a closed or reused descriptor. */
struct req {
    atomic_int refs;
    atomic_int done;
    int kind, fail, result, efd;
    int flen, padding, type, dlen;
    const unsigned char *from, *dgst;
    unsigned char *to, *sig;
    unsigned int *siglen;
    RSA *rsa;
    const BIGNUM *kinv, *r;
    EC_KEY *eckey;
    struct req *next;
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;      /* work for the active lanes */
static pthread_cond_t cv_idle = PTHREAD_COND_INITIALIZER; /* lanes above LANES wait here */
static struct req *head, *tail;
static long lanes_started;
static atomic_long lanes_wanted = 64, latency_us, fail_next;
static atomic_long n_async, n_sync, n_failed, n_pauses, n_polls;

static pthread_once_t once = PTHREAD_ONCE_INIT;
static RSA_METHOD *rsa_meth;
static EC_KEY_METHOD *ec_meth;
static int (*ec_sign_sw)(int, const unsigned char *, int, unsigned char *, unsigned int *,
                         const BIGNUM *, const BIGNUM *, EC_KEY *);

static void put(struct req *q) {
    if (atomic_fetch_sub(&q->refs, 1) == 1) {
        close(q->efd);
        free(q);
    }
}

static int compute(struct req *q) {
    switch (q->kind) {
    case OP_RSA_ENC:
        return RSA_meth_get_priv_enc(RSA_PKCS1_OpenSSL())(q->flen, q->from, q->to, q->rsa,
                                                          q->padding);
    case OP_RSA_DEC:
        return RSA_meth_get_priv_dec(RSA_PKCS1_OpenSSL())(q->flen, q->from, q->to, q->rsa,
                                                          q->padding);
    default:
        return ec_sign_sw(q->type, q->dgst, q->dlen, q->sig, q->siglen, q->kinv, q->r, q->eckey);
    }
}

static void *lane(void *arg) {
    long index = (long)arg;
    pthread_setname_np(pthread_self(), "accel-lane");
    for (;;) {
        pthread_mutex_lock(&mu);
        for (;;) {
            if (index >= atomic_load(&lanes_wanted))
                pthread_cond_wait(&cv_idle, &mu);
            else if (head == NULL)
                pthread_cond_wait(&cv, &mu);
            else
                break;
        }
        struct req *q = head;
        head = q->next;
        if (head == NULL)
            tail = NULL;
        pthread_mutex_unlock(&mu);

        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        long us = atomic_load(&latency_us);
        until.tv_sec += us / 1000000;
        until.tv_nsec += (us % 1000000) * 1000;
        if (until.tv_nsec >= 1000000000) {
            until.tv_sec += 1;
            until.tv_nsec -= 1000000000;
        }
        q->result = q->fail ? (q->kind == OP_ECDSA ? 0 : -1) : compute(q);
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &until, NULL) == EINTR) {
        }
        atomic_store(&q->done, 1);
        uint64_t one = 1;
        ssize_t w = write(q->efd, &one, sizeof one);
        (void)w;
        put(q);
    }
    return NULL;
}

static void submit(struct req *q) {
    pthread_mutex_lock(&mu);
    long want = atomic_load(&lanes_wanted);
    while (lanes_started < want && lanes_started < MAX_LANES) {
        pthread_t t;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        if (pthread_create(&t, &attr, lane, (void *)lanes_started) != 0) {
            pthread_attr_destroy(&attr);
            break;
        }
        pthread_attr_destroy(&attr);
        lanes_started++;
    }
    q->next = NULL;
    if (tail)
        tail->next = q;
    else
        head = q;
    tail = q;
    pthread_cond_signal(&cv);
    pthread_mutex_unlock(&mu);
}

/* Runs one operation on the device: paused in the current async job, else blocking. */
static int run(struct req *q, int failed) {
    q->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (q->efd < 0) {
        free(q);
        return failed;
    }
    atomic_init(&q->refs, 2);
    atomic_init(&q->done, 0);
    long f = atomic_load(&fail_next);
    while (f > 0 && !atomic_compare_exchange_weak(&fail_next, &f, f - 1)) {
    }
    q->fail = f > 0;

    ASYNC_JOB *job = ASYNC_get_current_job();
    ASYNC_WAIT_CTX *waitctx = job ? ASYNC_get_wait_ctx(job) : NULL;
    if (waitctx && !ASYNC_WAIT_CTX_set_wait_fd(waitctx, q, q->efd, NULL, NULL))
        waitctx = NULL;
    submit(q);
    /* Like a device driver: pause at least once after submitting (the eventfd may already be
     * readable), then until done. Resumes without the fd firing (or a job whose pausing is
     * blocked) are tolerated a while, then the caller blocks. */
    int spins = 0;
    while (waitctx && spins < 1000) {
        atomic_fetch_add(&n_pauses, 1);
        if (!ASYNC_pause_job())
            break;
        struct pollfd p = {q->efd, POLLIN, 0};
        if (atomic_load(&q->done))
            break;
        if (poll(&p, 1, 0) == 0)
            spins++;
    }
    if (waitctx)
        ASYNC_WAIT_CTX_clear_fd(waitctx, q);
    int in_job = waitctx != NULL;
    while (!atomic_load(&q->done)) {
        struct pollfd p = {q->efd, POLLIN, 0};
        poll(&p, 1, -1);
    }
    int result = q->result;
    if (q->fail)
        atomic_fetch_add(&n_failed, 1);
    else
        atomic_fetch_add(in_job ? &n_async : &n_sync, 1);
    put(q);
    return result;
}

static int rsa_op(int kind, int flen, const unsigned char *from, unsigned char *to, RSA *rsa,
                  int padding) {
    struct req *q = calloc(1, sizeof *q);
    if (q == NULL)
        return -1;
    q->kind = kind;
    q->flen = flen;
    q->from = from;
    q->to = to;
    q->rsa = rsa;
    q->padding = padding;
    return run(q, -1);
}

static int t_rsa_priv_enc(int flen, const unsigned char *from, unsigned char *to, RSA *rsa,
                          int padding) {
    return rsa_op(OP_RSA_ENC, flen, from, to, rsa, padding);
}

static int t_rsa_priv_dec(int flen, const unsigned char *from, unsigned char *to, RSA *rsa,
                          int padding) {
    return rsa_op(OP_RSA_DEC, flen, from, to, rsa, padding);
}

static int t_ec_sign(int type, const unsigned char *dgst, int dlen, unsigned char *sig,
                     unsigned int *siglen, const BIGNUM *kinv, const BIGNUM *r, EC_KEY *eckey) {
    struct req *q = calloc(1, sizeof *q);
    if (q == NULL)
        return 0;
    q->kind = OP_ECDSA;
    q->type = type;
    q->dgst = dgst;
    q->dlen = dlen;
    q->sig = sig;
    q->siglen = siglen;
    q->kinv = kinv;
    q->r = r;
    q->eckey = eckey;
    return run(q, 0);
}

static int ctrl(ENGINE *e, int cmd, long i, void *p, void (*f)(void)) {
    (void)e;
    (void)f;
    atomic_long *stat = NULL;
    switch (cmd) {
    case CMD_LATENCY_US:
        atomic_store(&latency_us, i < 0 ? 0 : i);
        return 1;
    case CMD_LANES:
        if (i < 1 || i > MAX_LANES)
            return 0;
        pthread_mutex_lock(&mu);
        atomic_store(&lanes_wanted, i);
        pthread_cond_broadcast(&cv);
        pthread_cond_broadcast(&cv_idle);
        pthread_mutex_unlock(&mu);
        return 1;
    case CMD_FAIL_NEXT:
        atomic_store(&fail_next, i < 0 ? 0 : i);
        return 1;
    case CMD_POLL:
        atomic_fetch_add(&n_polls, 1);
        return 1;
    case CMD_RESET:
        atomic_store(&n_async, 0);
        atomic_store(&n_sync, 0);
        atomic_store(&n_failed, 0);
        atomic_store(&n_pauses, 0);
        atomic_store(&n_polls, 0);
        return 1;
    case CMD_STAT_ASYNC: stat = &n_async; break;
    case CMD_STAT_SYNC: stat = &n_sync; break;
    case CMD_STAT_FAILED: stat = &n_failed; break;
    case CMD_STAT_PAUSES: stat = &n_pauses; break;
    case CMD_STAT_POLLS: stat = &n_polls; break;
    default:
        return 0;
    }
    if (p == NULL)
        return 0;
    *(long *)p = atomic_load(stat);
    return 1;
}

static long env_long(const char *name, long fallback) {
    const char *v = getenv(name);
    return v && *v ? strtol(v, NULL, 10) : fallback;
}

static void init_once(void) {
    /* lanes may outlive an ENGINE_free: keep this library mapped for the process lifetime */
    Dl_info info;
    if (dladdr((void *)init_once, &info) && info.dli_fname)
        dlopen(info.dli_fname, RTLD_NOW | RTLD_NODELETE);
    rsa_meth = RSA_meth_dup(RSA_PKCS1_OpenSSL());
    if (rsa_meth) {
        RSA_meth_set1_name(rsa_meth, "mosn test accelerator RSA");
        RSA_meth_set_priv_enc(rsa_meth, t_rsa_priv_enc);
        RSA_meth_set_priv_dec(rsa_meth, t_rsa_priv_dec);
    }
    ec_meth = EC_KEY_METHOD_new(EC_KEY_OpenSSL());
    if (ec_meth) {
        int (*setup)(EC_KEY *, BN_CTX *, BIGNUM **, BIGNUM **);
        ECDSA_SIG *(*sign_sig)(const unsigned char *, int, const BIGNUM *, const BIGNUM *,
                               EC_KEY *);
        EC_KEY_METHOD_get_sign(EC_KEY_OpenSSL(), &ec_sign_sw, &setup, &sign_sig);
        EC_KEY_METHOD_set_sign(ec_meth, t_ec_sign, setup, sign_sig);
    }
    latency_us = env_long("MOSN_TEST_ENGINE_LATENCY_US", 0);
    long lanes = env_long("MOSN_TEST_ENGINE_LANES", 64);
    lanes_wanted = lanes < 1 ? 1 : lanes > MAX_LANES ? MAX_LANES : lanes;
    fail_next = env_long("MOSN_TEST_ENGINE_FAIL_NEXT", 0);
}

/* Accepts any id: loading by path (the `dynamic` engine's SO_PATH) may pass the path as id. */
static int bind(ENGINE *e, const char *id) {
    (void)id;
    pthread_once(&once, init_once);
    return rsa_meth && ec_meth && ENGINE_set_id(e, ENGINE_ID) &&
           ENGINE_set_name(e, "mosn-rs test accelerator (fake device on worker threads)") &&
           ENGINE_set_RSA(e, rsa_meth) && ENGINE_set_EC(e, ec_meth) &&
           ENGINE_set_ctrl_function(e, ctrl) && ENGINE_set_cmd_defns(e, cmds);
}

IMPLEMENT_DYNAMIC_BIND_FN(bind)
IMPLEMENT_DYNAMIC_CHECK_FN()
