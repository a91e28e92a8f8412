# The load generator of `make bench`'s echo benchmark: one thread, epoll, N clients, every byte checked.
# el.c is the engine (connections, round trips, checks), echo_load.c its command line and report.
PROGRAMS += $(O)/echo_load
$(O)/echo_load: loadgen/echo_load.c loadgen/el.c loadgen/el.h common/args.c common/args.h
