// The function's answer.
import java.nio.charset.StandardCharsets;

public record Response(int status, byte[] body, String contentType) {
    public Response(int status, String body, String contentType) {
        this(status, body.getBytes(StandardCharsets.UTF_8), contentType);
    }
}
