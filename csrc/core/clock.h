/* clock.h: the loop's monotonic clock.
 *
 * loop.time() must agree with time.monotonic(), because asyncio programs mix
 * the two (asyncio.timeout() takes loop.time(), users log time.monotonic()),
 * so both read CLOCK_MONOTONIC. */
#ifndef CIO_CLOCK_H
#define CIO_CLOCK_H

/* Seconds on CLOCK_MONOTONIC, as a double like time.monotonic(). */
double cio_clock_now(void);

/* The clock's resolution in seconds (clock_getres), like
 * time.get_clock_info('monotonic').resolution. */
double cio_clock_resolution(void);

/* Milliseconds to wait for a deadline `delay` seconds away, rounded up so
 * that a poller never wakes before the deadline and spins; clamped to
 * [0, max_ms].  A NaN delay counts as zero. */
int cio_clock_delay_to_ms(double delay, int max_ms);

#endif
