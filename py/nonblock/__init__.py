"""Lab 1: non-blocking sockets seen from Python.

    sockets    recv_some / sendall on a non-blocking socket: try first, wait only if it would block
    client     a program that sends a large message through them and checks the echo
    mysocket   the talk's MySocket client, fixed: asyncio streams over TLS
    tls_echo   a small TLS echo server to try MySocket against (certificates from trustme)
"""
