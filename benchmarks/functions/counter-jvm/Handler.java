// Counter function for snapshot tests: every request increments an in-memory
// counter, so a restored JVM visibly continues where its snapshot left off.
// JDK only (com.sun.net.httpserver; no Maven here). Compile with
// `javac Handler.java` in this directory.
import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpServer;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.net.URI;
import java.nio.charset.StandardCharsets;
import java.util.concurrent.atomic.AtomicLong;

public class Handler {
    private static final AtomicLong COUNT = new AtomicLong();

    // A small sieve so the JIT has a hot method to compile.
    static int work(int n) {
        boolean[] composite = new boolean[n];
        int primes = 0;
        for (int i = 2; i < n; i++) {
            if (!composite[i]) {
                primes++;
                for (long j = (long) i * i; j < n; j += i) composite[(int) j] = true;
            }
        }
        return primes;
    }

    static void handle(HttpExchange ex) throws IOException {
        try (InputStream in = ex.getRequestBody()) {
            in.readAllBytes();
        }
        long count = COUNT.incrementAndGet();
        long start = System.nanoTime();
        int primes = work(20000);
        long serverUs = (System.nanoTime() - start) / 1000;
        byte[] body = String.format("{\"count\": %d, \"pid\": %d, \"primes\": %d, \"server_us\": %d}",
                count, ProcessHandle.current().pid(), primes, serverUs).getBytes(StandardCharsets.UTF_8);
        ex.getResponseHeaders().set("Content-Type", "application/json");
        ex.sendResponseHeaders(200, body.length);
        try (OutputStream out = ex.getResponseBody()) {
            out.write(body);
        }
    }

    public static void main(String[] args) throws IOException {
        String env = System.getenv("upstream_url");
        URI url = URI.create(env == null || env.isEmpty() ? "http://127.0.0.1:5000" : env);
        String host = url.getHost() == null ? "127.0.0.1" : url.getHost();
        int port = url.getPort() < 0 ? 5000 : url.getPort();
        HttpServer server = HttpServer.create(new InetSocketAddress(host, port), 0);
        server.createContext("/", Handler::handle);
        server.setExecutor(null); // the dispatcher thread handles requests: no pool to snapshot
        server.start();
    }
}
