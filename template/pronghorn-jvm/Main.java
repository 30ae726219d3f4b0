// Pronghorn's Java template: the HTTP server around function/Handler.java.
// Pronghorn's agent starts it (the template's fprocess) or restores it from a
// snapshot, and sends it each call on the address in upstream_url (default
// http://127.0.0.1:5000), as of-watchdog's http mode does. JDK only
// (jdk.httpserver). The one Handler instance lives as long as the worker,
// and in a restored worker its state goes on from the snapshot.
import com.sun.net.httpserver.HttpServer;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.net.URI;
import java.util.concurrent.Executors;

public class Main {
    public static void main(String[] args) throws IOException {
        URI upstream = URI.create(System.getenv().getOrDefault("upstream_url", "http://127.0.0.1:5000"));
        String host = upstream.getHost() == null ? "127.0.0.1" : upstream.getHost();
        int port = upstream.getPort() < 0 ? 5000 : upstream.getPort();
        // Headers and body go out in separate writes; without TCP_NODELAY
        // the body would wait for the agent's delayed ACK (~40 ms a call).
        System.setProperty("sun.net.httpserver.nodelay", "true");
        Handler handler = new Handler();
        HttpServer server = HttpServer.create(new InetSocketAddress(host, port), 64);
        // One thread: calls reach the handler one at a time, as the agent
        // sends them, and the handler needs no locking.
        server.setExecutor(Executors.newSingleThreadExecutor());
        server.createContext("/", exchange -> {
            byte[] body;
            try (InputStream in = exchange.getRequestBody()) {
                body = in.readAllBytes(); // chunked bodies are decoded by the server
            }
            Response res;
            try {
                res = handler.handle(new Request(exchange.getRequestMethod(), exchange.getRequestURI().getPath(),
                        exchange.getRequestURI().getRawQuery(), exchange.getRequestHeaders(), body));
            } catch (RuntimeException e) {
                e.printStackTrace();
                res = new Response(500, "handler failed\n", "text/plain; charset=utf-8");
            }
            byte[] out = res.body();
            exchange.getResponseHeaders().set("Content-Type", res.contentType());
            exchange.sendResponseHeaders(res.status(), out.length == 0 ? -1 : out.length);
            try (OutputStream os = exchange.getResponseBody()) {
                os.write(out);
            }
        });
        server.start();
    }
}
