/* clock.c: CLOCK_MONOTONIC as doubles, and the rounding a poller needs. */
#include "clock.h"

#include <math.h>
#include <time.h>

double
cio_clock_now(void)
{
    struct timespec ts;
    /* CLOCK_MONOTONIC cannot fail with a valid pointer on Linux. */
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

double
cio_clock_resolution(void)
{
    struct timespec ts;
    if (clock_getres(CLOCK_MONOTONIC, &ts) != 0) {
        return 1e-9;
    }
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int
cio_clock_delay_to_ms(double delay, int max_ms)
{
    if (!(delay > 0.0)) { /* also catches NaN */
        return 0;
    }
    double ms = ceil(delay * 1e3);
    if (ms >= (double)max_ms) {
        return max_ms;
    }
    return (int)ms;
}
