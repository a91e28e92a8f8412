# Lab 1: non-blocking sockets. nb.c is the learner's file; the client and the server are given.
PROGRAMS += $(O)/nb_client $(O)/slow_server
$(O)/nb_client: nonblock/nb_client.c nonblock/nb.c nonblock/nb.h common/args.c common/args.h
$(O)/slow_server: nonblock/slow_server.c common/args.c common/args.h
