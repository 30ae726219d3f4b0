// Your function. handle gets each call and returns the response. The one
// Handler instance lives as long as the worker, and a worker restored from
// a snapshot starts with its fields as they were: here a call counter that
// goes on from where the snapshot was taken.
public class Handler {
    private long count;

    public Response handle(Request req) {
        count++;
        String json = "{\"count\":" + count + ",\"pid\":" + ProcessHandle.current().pid()
                + ",\"runtime\":\"jvm\",\"received\":" + req.body().length + "}";
        return new Response(200, json, "application/json");
    }
}
