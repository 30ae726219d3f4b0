// A call to the function: method, path, raw query, headers and body.
import java.util.List;
import java.util.Map;

public record Request(String method, String path, String query, Map<String, List<String>> headers, byte[] body) {
}
