// simple-hash: hashes generated records with SHA-256 (MessageDigest) and a
// hand-written FNV-1a, and keeps them in a hash map keyed by digest prefix —
// the artifact's JVM hashing benchmark. JDK only. Query: size (records,
// default 20000), mutability, seed.
import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpServer;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.net.URI;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HashMap;
import java.util.Map;
import java.util.Random;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;

public class Handler {
    static final int BASE_SIZE = 20000;

    static long fnv1a(byte[] data) {
        long h = 0xcbf29ce484222325L;
        for (byte b : data) {
            h ^= (b & 0xff);
            h *= 0x100000001b3L;
        }
        return h;
    }

    static String work(int n, Random rng) {
        MessageDigest sha;
        try {
            sha = MessageDigest.getInstance("SHA-256");
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
        Map<Integer, Integer> buckets = new HashMap<>();
        long fold = 0;
        StringBuilder sb = new StringBuilder();
        for (int i = 0; i < n; i++) {
            sb.setLength(0);
            sb.append("record-").append(i).append('-').append(rng.nextLong()).append("-payload");
            byte[] rec = sb.toString().getBytes(StandardCharsets.UTF_8);
            byte[] d = sha.digest(rec);
            int prefix = ((d[0] & 0xff) << 8) | (d[1] & 0xff);
            buckets.merge(prefix, 1, Integer::sum);
            fold ^= fnv1a(rec) + fnv1a(d);
        }
        return String.format("\"records\": %d, \"buckets\": %d, \"fold\": \"%016x\"", n, buckets.size(), fold);
    }

    // --- HTTP plumbing (identical in every JVM benchmark) -------------------
    // One dispatcher thread, no executor pool: requests are served one at a
    // time and there are no idle pool threads in the snapshot.

    // Requests this runtime state has served, the current one included. It
    // lives in the heap, so a worker restored from a snapshot taken at
    // request r answers r+1 first: the lineage request number the engine
    // learns by, which the evaluation driver records for every request.
    static long served = 0;

    // Tells workers apart for the evaluation driver. The agent is PID 1 of
    // every worker's fresh PID namespace and CRIU restores into a fresh time
    // namespace, so the agent's start time (field 22 of /proc/1/stat) and the
    // time namespace change with every worker, cold or restored, while this
    // process's own start time repeats across restores of one snapshot. Read
    // after the handler's clock has stopped.
    static String workerToken() {
        try {
            String stat = Files.readString(Path.of("/proc/1/stat"));
            String[] f = stat.substring(stat.lastIndexOf(')') + 2).split(" ");
            String ns = Files.readSymbolicLink(Path.of("/proc/self/ns/time")).toString();
            return f[19] + "/" + ns.substring(6, ns.length() - 1);
        } catch (IOException | RuntimeException e) {
            return "";
        }
    }

    static Map<String, String> query(URI uri) {
        Map<String, String> q = new HashMap<>();
        String raw = uri.getRawQuery();
        if (raw == null) return q;
        for (String kv : raw.split("&")) {
            int eq = kv.indexOf('=');
            if (eq > 0) q.put(kv.substring(0, eq), java.net.URLDecoder.decode(kv.substring(eq + 1), StandardCharsets.UTF_8));
        }
        return q;
    }

    // Draws this request's input size from a Gaussian around base with
    // relative stddev = mutability (the artifact's knob); a seed query
    // parameter makes the draw and the generated input reproducible.
    static int inputSize(Map<String, String> q, int base, Random rng) {
        double mutability = Double.parseDouble(q.getOrDefault("mutability", "0"));
        double scale = mutability > 0 ? 1.0 + rng.nextGaussian() * mutability : 1.0;
        scale = Math.min(3.0, Math.max(0.1, scale)); // neither vanish nor take seconds
        return Math.max(1, (int) (base * scale));
    }

    static void handle(HttpExchange ex) throws IOException {
        try (InputStream in = ex.getRequestBody()) {
            in.readAllBytes(); // drain: the connection is kept alive
        }
        Map<String, String> q = query(ex.getRequestURI());
        long start = System.nanoTime();
        String result;
        int status = 200;
        try {
            Random rng = q.containsKey("seed") ? new Random(Long.parseLong(q.get("seed"))) : new Random();
            int base = Integer.parseInt(q.getOrDefault("size", String.valueOf(BASE_SIZE)));
            result = work(inputSize(q, base, rng), rng);
        } catch (RuntimeException e) {
            status = 500;
            result = "\"error\": \"" + e.toString().replace("\\", "\\\\").replace("\"", "'") + "\"";
        }
        long serverUs = (System.nanoTime() - start) / 1000;
        served++;
        byte[] body = ("{" + result + ", \"server_us\": " + serverUs + ", \"lineage\": " + served
                + ", \"worker\": \"" + workerToken() + "\"}").getBytes(StandardCharsets.UTF_8);
        ex.getResponseHeaders().set("Content-Type", "application/json");
        ex.sendResponseHeaders(status, body.length);
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
        server.setExecutor(null);
        server.start();
    }
}
