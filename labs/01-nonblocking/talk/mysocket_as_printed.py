# The talk's slide "An example in action", as printed, so you can watch it fail.
#
# Only three things are added (each marked ADAPTED): the imports, the server's
# address taken from the command line instead of 'mysite.com':4637, and the
# asyncio.run(main()) the slide leaves out. The CA the test server uses is
# trusted through the SSL_CERT_FILE environment variable, which
# ssl.create_default_context honours, so the SSL code is untouched.
#
#   python -m nonblock.tls_echo --port 0 --make-certs /tmp/certs &
#   SSL_CERT_FILE=/tmp/certs/ca.pem python3 mysocket_as_printed.py 127.0.0.1 PORT
#
# Predict before you run it: what does it print? What is its exit status?
# (labs/01-nonblocking/tests/test_lab1_talk.py shows the answer; py/nonblock/mysocket.py
# lists every bug.)
import asyncio  # ADAPTED: the slide shows no imports
import socket  # ADAPTED
import ssl  # ADAPTED
import sys  # ADAPTED

HOST, PORT = sys.argv[1], int(sys.argv[2])  # ADAPTED: the local test server


class MySocket:
    def __init__(self):
        self.__host = HOST  # ADAPTED: was 'mysite.com'
        self.__port = PORT  # ADAPTED: was 4637
        self.__recv_handler = None
        sock = socket.socket(socket.AF_INET)
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        self.__conn = context.wrap_socket(sock, server_hostname=self.__host)


    def connect(self):
        self.__conn.connect((self.__host, self.__port))
        self.__recv_handler = asyncio.ensure_future(self.__recive())

    def send(self, data):
        self.__conn.write(data.encode())

    async def __recive(self):
        while True:
            data = await asyncio.get_event_loop().sock_recv(self.__conn, 256)
            data = data.decode('utf-8')
            print('<< ' + data)


async def main():
    my_sock = MySocket()
    my_sock.connect()
    my_sock.send('ping')
    asyncio.sleep(0.2)


asyncio.run(main())  # ADAPTED: the slide does not show how main() is run
