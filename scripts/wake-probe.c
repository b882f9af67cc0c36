// Where does a thread woken after a pause run? Measures the machine, not GPUBridge.
//
// A helper thread sleeps on a condition variable for GAP microseconds; the main thread (running) then wakes it and
// both compute the same fixed loop. Over 30 rounds it counts how often the helper started on the main thread's CPU,
// and how often the pair took more than 1.5 times one thread's time (both loops on one core). On an ordinary Linux
// machine with an idle second core neither happens; docs/PERFORMANCE.md ("One-core phases") shows what it found on
// the measured VM.
//
//   cc -O2 scripts/wake-probe.c -o /tmp/wake-probe -lpthread
//   for gap in 0 1000 6000 10000 20000 100000; do /tmp/wake-probe $gap; done
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static volatile double sink;

// A fixed amount of arithmetic (a few milliseconds); returns the seconds it took.
static double work(void) {
    double start = now(), x = 1;
    for (long i = 0; i < 3000000; i++) x = x * 1.0000001 + 1e-9;
    sink = x;
    return now() - start;
}

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake = PTHREAD_COND_INITIALIZER, finished = PTHREAD_COND_INITIALIZER;
static int go = 0, done = 0, helperCPU = -1;

static void *helper(void *unused) {
    (void)unused;
    for (;;) {
        pthread_mutex_lock(&lock);
        while (!go) pthread_cond_wait(&wake, &lock);
        go = 0;
        pthread_mutex_unlock(&lock);
        helperCPU = sched_getcpu();
        work();
        pthread_mutex_lock(&lock);
        done = 1;
        pthread_cond_signal(&finished);
        pthread_mutex_unlock(&lock);
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s GAP_MICROSECONDS\n", argv[0]);
        return 2;
    }
    int gap = atoi(argv[1]), rounds = 30, same = 0, slow = 0;
    work();
    double one = work();
    pthread_t thread;
    pthread_create(&thread, NULL, helper, NULL);
    for (int r = 0; r < rounds; r++) {
        usleep(gap);
        pthread_mutex_lock(&lock);
        go = 1;
        done = 0;
        pthread_cond_signal(&wake);
        pthread_mutex_unlock(&lock);
        int mainCPU = sched_getcpu();
        double start = now();
        work();
        pthread_mutex_lock(&lock);
        while (!done) pthread_cond_wait(&finished, &lock);
        pthread_mutex_unlock(&lock);
        if (now() - start > 1.5 * one) slow++;
        if (helperCPU == mainCPU) same++;
    }
    printf("gap %6d us: the woken thread started on the waker's CPU in %2d of %d rounds; "
           "the pair took >1.5x one thread's time in %2d\n",
           gap, same, rounds, slow);
    return 0;
}
