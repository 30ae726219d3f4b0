// word-count: generates a text from a Zipf-like vocabulary, tokenizes it,
// counts words in a hash map and sorts the top ten — the artifact's JVM
// word-count benchmark. JDK only. Query: size (words, default 60000),
// mutability, seed.
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
import java.util.ArrayList;
import java.util.List;

public class Handler {
    static final int BASE_SIZE = 60000;
    static final String[] SYLLABLES = {"ka", "lo", "mi", "ne", "ru", "ta", "shi", "po", "ve", "da", "zu", "qe"};

    static String work(int n, Random rng) {
        // Vocabulary of 2000 synthetic words, drawn with a skewed
        // distribution so a few words dominate, as in natural text.
        String[] vocab = new String[2000];
        for (int i = 0; i < vocab.length; i++) {
            StringBuilder w = new StringBuilder();
            int x = i + 1;
            while (x > 0) {
                w.append(SYLLABLES[x % SYLLABLES.length]);
                x /= SYLLABLES.length;
            }
            vocab[i] = w.toString();
        }
        StringBuilder text = new StringBuilder(n * 7);
        for (int i = 0; i < n; i++) {
            double u = rng.nextDouble();
            text.append(vocab[(int) (vocab.length * u * u * u)]).append(i % 17 == 16 ? ".\n" : " ");
        }
        Map<String, Integer> counts = new HashMap<>();
        String s = text.toString();
        int start = -1;
        for (int i = 0; i <= s.length(); i++) {
            boolean letter = i < s.length() && Character.isLetter(s.charAt(i));
            if (letter && start < 0) start = i;
            if (!letter && start >= 0) {
                counts.merge(s.substring(start, i).toLowerCase(), 1, Integer::sum);
                start = -1;
            }
        }
        List<Map.Entry<String, Integer>> entries = new ArrayList<>(counts.entrySet());
        entries.sort((x, y) -> y.getValue() - x.getValue() != 0 ? y.getValue() - x.getValue() : x.getKey().compareTo(y.getKey()));
        StringBuilder top = new StringBuilder();
        for (int i = 0; i < Math.min(10, entries.size()); i++) {
            if (i > 0) top.append(", ");
            top.append('"').append(entries.get(i).getKey()).append("\": ").append(entries.get(i).getValue());
        }
        return "\"words\": " + n + ", \"distinct\": " + counts.size() + ", \"top\": {" + top + "}";
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
