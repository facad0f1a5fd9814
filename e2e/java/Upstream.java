// The demo API's routes matched the way Spring MVC 5 on Tomcat matches them with case-insensitive
// matching, suffix pattern matching and trailing slash matching turned on: an upstream for the
// path differential test (e2e/paths_test.go) that folds non-ASCII letters and drops format
// suffixes, which neither Go's ServeMux nor Express does. Run as `java Upstream.java` (JDK 11 or
// later, no other library); it prints its port on the first line.
//
// What it does to a request path, Tomcat's part then Spring's:
//   - the request target is read as a path (never "//host/x" as an authority, as the JDK's
//     own URI parsing would), the query dropped;
//   - a raw or encoded "/" or "\" inside a segment, a raw "#", a control character, a
//     malformed escape or bytes that are not UTF-8 are refused (400), as Tomcat refuses them;
//   - the path is percent-decoded as UTF-8, ";" parameters are dropped from every segment,
//     repeated slashes merged and dot segments resolved (400 above the root);
//   - each route matches as AntPathMatcher matches it: literal segments compared with the
//     JDK's own String.equalsIgnoreCase; "/x" also as "/x/" and as "/x." followed by anything
//     in the last segment (Spring's "/x.*", whose "*" segment folds only ASCII: here the stem is
//     compared with equalsIgnoreCase too, so the stand-in routes at least what Spring routes).
// Every handler names itself in X-Handler, and says in X-Saw-Spoofed whether a client's
// identity header reached it.
import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpServer;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.net.InetSocketAddress;
import java.nio.ByteBuffer;
import java.nio.CharBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;

public class Upstream {
    static final String[] ROUTES = {"/healthz", "/api/messages", "/secure"};

    public static void main(String[] args) throws IOException {
        HttpServer server = HttpServer.create(new InetSocketAddress("127.0.0.1", 0), 64);
        server.createContext("/", Upstream::serve);
        server.start();
        System.out.println(server.getAddress().getPort());
        System.out.flush();
    }

    static void serve(HttpExchange ex) throws IOException {
        try (ex) {
            String spoofed = "spoofed".equals(ex.getRequestHeaders().getFirst("X-Authz-Subject"))
                    || "spoofed".equals(ex.getRequestHeaders().getFirst("X-Authz-Scopes")) ? "1" : "0";
            ex.getResponseHeaders().set("X-Saw-Spoofed", spoofed);
            String method = ex.getRequestMethod();
            // The target as sent: the JDK's server parses it as a URI reference, which reads
            // "//host/x" as an authority and a path; Tomcat reads a path.
            String target = ex.getRequestURI().toString();
            int query = target.indexOf('?');
            List<String> segs = lookupPath(query >= 0 ? target.substring(0, query) : target);
            if (segs == null) {
                ex.sendResponseHeaders(400, -1);
                return;
            }
            String route = (method.equals("GET") || method.equals("HEAD")) ? route(segs) : null;
            if (route == null) {
                ex.sendResponseHeaders(404, -1);
                return;
            }
            ex.getResponseHeaders().set("X-Handler", "GET " + route);
            ex.sendResponseHeaders(200, -1);
        }
    }

    // lookupPath returns the segments of the decoded, normalised path (the last one empty for a
    // trailing slash), or null when Tomcat would refuse the path.
    static List<String> lookupPath(String raw) {
        if (raw == null || !raw.startsWith("/")) {
            return null;
        }
        // The request line was read as ISO-8859-1: these are its bytes.
        byte[] in = raw.getBytes(StandardCharsets.ISO_8859_1);
        List<String> segs = new ArrayList<>();
        ByteArrayOutputStream seg = new ByteArrayOutputStream();
        for (int i = 1; i <= in.length; i++) {
            if (i == in.length || in[i] == '/') {
                String s = utf8(seg.toByteArray());
                if (s == null) {
                    return null;
                }
                int semi = s.indexOf(';');
                segs.add(semi >= 0 ? s.substring(0, semi) : s);
                seg.reset();
                continue;
            }
            int b = in[i] & 0xff;
            if (b == '#') {
                return null;
            }
            if (b == '%') {
                if (i + 2 >= in.length) {
                    return null;
                }
                int hi = Character.digit(in[i + 1], 16), lo = Character.digit(in[i + 2], 16);
                if (hi < 0 || lo < 0) {
                    return null;
                }
                b = hi << 4 | lo;
                i += 2;
                if (b == '/') {
                    return null;
                }
            }
            if (b == '\\' || b < 0x20 || b == 0x7f) {
                return null;
            }
            seg.write(b);
        }
        List<String> out = new ArrayList<>();
        for (int i = 0; i < segs.size(); i++) {
            String s = segs.get(i);
            boolean last = i == segs.size() - 1;
            if (s.equals("..")) {
                if (out.isEmpty()) {
                    return null;
                }
                out.remove(out.size() - 1);
            } else if (!s.equals(".") && (!s.isEmpty() || last)) {
                out.add(s);
                continue;
            }
            if (last) {
                out.add(""); // "/a/." and "/a/b/.." end with a slash
            }
        }
        return out;
    }

    static String utf8(byte[] b) {
        try {
            return StandardCharsets.UTF_8.newDecoder()
                    .onMalformedInput(CodingErrorAction.REPORT)
                    .onUnmappableCharacter(CodingErrorAction.REPORT)
                    .decode(ByteBuffer.wrap(b)).toString();
        } catch (CharacterCodingException e) {
            return null;
        }
    }

    static String route(List<String> segs) {
        List<String> path = new ArrayList<>(segs);
        if (path.size() > 1 && path.get(path.size() - 1).isEmpty()) {
            path.remove(path.size() - 1); // trailing slash matching
        }
        for (String route : ROUTES) {
            String[] want = route.substring(1).split("/");
            if (want.length != path.size()) {
                continue;
            }
            boolean match = true;
            for (int i = 0; i < want.length && match; i++) {
                String got = path.get(i);
                if (i == want.length - 1 && !got.equalsIgnoreCase(want[i]) && got.indexOf('.') >= 0) {
                    got = got.substring(0, got.indexOf('.')); // suffix pattern: "/x.*"
                }
                match = got.equalsIgnoreCase(want[i]);
            }
            if (match) {
                return route;
            }
        }
        return null;
    }
}
